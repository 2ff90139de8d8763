"""``python -m ssl_teach``: see :mod:`ssl_teach.cli`."""

import sys

from .cli import main

sys.exit(main())
