"""The parts every task shares (the contract itself is in :mod:`ssl_teach.pretext`)."""

from __future__ import annotations

import dataclasses


class Task:
    """Base of every task, a frozen dataclass whose fields are its settings: ``chance`` from
    ``num_classes``, and ``options()``, those settings as a dict (part of the checkpoint key)."""

    @property
    def chance(self) -> float:
        """The accuracy of a uniform guess: one over the number of classes."""
        return 1 / self.num_classes

    def options(self) -> dict:
        return dataclasses.asdict(self)
