# `make lab` opens the notebooks; `make test`, `make test-ui`, `make book` and `make test-book`
# are everything CI checks.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: lab test test-ui book test-book student profile-notebooks clean

# Create the virtual environment on first use; reinstall when the dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "ssl_teach needs Python >= 3.10, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[lab,dev]'
	touch $(STAMP)

# JupyterLab refuses to run as root (containers, many lab machines) unless told it may.
# LAB_ARGS: more options, e.g. make lab LAB_ARGS=--port=8899
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --no-browser --notebook-dir=notebooks \
		$(shell [ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

# CACHE: the checkpoint cache of a test run. Empty (the default): a fresh temporary folder,
# removed afterwards. CI gives test and test-ui one fresh folder, so that the browser checks
# load what the notebooks trained instead of training it again.
CACHE ?=

# Lint, unit tests and every notebook under nbval, with a fresh checkpoint cache so that the
# notebooks really train (and later notebooks reuse what earlier ones trained in this run).
test: $(STAMP)
	@[ -z "$(CACHE)" ] || [ -z "$$(ls -A "$(CACHE)" 2>/dev/null)" ] || \
		{ echo "CACHE=$(CACHE) is not empty: make test trains from a fresh cache" >&2; exit 2; }
	$(VENV)/bin/ruff check ssl_teach tests notebooks
	@cache="$(CACHE)"; \
	if [ -z "$$cache" ]; then cache=$$(mktemp -d) && trap 'rm -rf "$$cache"' EXIT; fi; \
	mkdir -p "$$cache" && \
	SSL_TEACH_CACHE="$$cache" MPLBACKEND=Agg $(PY) -m pytest tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=900 --durations=0

# The widgets in a real browser: JupyterLab (temporary cache and notebook copies) driven by
# Debian's Chromium through Playwright; screenshots in build/ui/. Installs what is missing.
# With CACHE (the folder a `make test` just filled) JupyterLab loads the trained models from it.
test-ui: $(STAMP)
	@$(PY) -c 'import playwright' 2>/dev/null || $(PY) -m pip install -q -e '.[ui]'
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
		$(SUDO) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'
	SSL_TEACH_UI_CACHE="$(CACHE)" $(PY) -m pytest tests/ui/jupyterlab_checks.py -v --durations=0

# The course as a static HTML book in build/book/: every notebook executed (through the
# checkpoint cache: CACHE, else $$SSL_TEACH_CACHE or the default one), with its figures, an index
# page, navigation and search. Installs what is missing (Sphinx, MyST-NB, the book theme).
book: $(STAMP)
	@$(PY) -c 'import myst_nb, sphinx_book_theme, jupyter_server_mathjax' 2>/dev/null || \
		$(PY) -m pip install -q -e '.[book]'
	$(if $(CACHE),SSL_TEACH_CACHE="$(CACHE)") MPLBACKEND=Agg $(PY) -m ssl_teach book --out build/book

# The built book in Chromium: every page loads without console errors, every figure has a size,
# navigation and search work; screenshots in build/book-shots/.
test-book: $(STAMP)
	@$(PY) -c 'import playwright' 2>/dev/null || $(PY) -m pip install -q -e '.[ui]'
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
		$(SUDO) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'
	$(PY) -m pytest tests/ui/book_checks.py -v

# Every notebook once, in order, with a fresh checkpoint cache (as `make test`): the seconds of
# each per stage (data, pretext training, baselines, evaluation, probes, plots, widgets, rest).
profile-notebooks: $(STAMP)
	MPLBACKEND=Agg $(PY) -m ssl_teach.notebook_profile notebooks/*.ipynb

# Student copies of every notebook (solution cells replaced by stubs) in build/student/
# (a folder of generated copies: --force replaces those made before).
student: $(STAMP)
	$(PY) -m ssl_teach student --notebooks notebooks --out build/student --force

clean:
	rm -rf $(VENV) build
