# Two commands do all the set-up on a fresh Debian/Ubuntu machine (see README.md):
#   make book   build the site into _build/html (creates .venv, installs what it needs,
#               executes every chapter)
#   make test   unit tests; every chapter executed in a Colab-like environment (.venv-colab);
#               every chapter executed once under nbmake; the site built from those
#               executed notebooks with warnings as errors; the built pages checked in
#               headless Chromium (screenshots in _build/screenshots)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ASSETS := book/_static/vendor/.installed
STAGE := _stage
COLAB_VENV ?= .venv-colab
COLAB_STAMP := $(COLAB_VENV)/.installed
# builds are not interactive: no progress bars in the executed pages
export CBAM_TUTORIAL_PROGRESS := 0
# the data cache and shared checkpoints stay inside this checkout (data/, ignored by git)
export CBAM_TUTORIAL_DATA ?= $(CURDIR)/data
# The offline CIFAR-10 copy, where this project's machines keep it; elsewhere leave it empty
# (torchvision downloads the original) or pass CIFAR10_ARCHIVE=/path/to/cifar10-jpeg.tar.gz.
CIFAR10_ARCHIVE ?= $(wildcard ../shared/data/cifar10-jpeg.tar.gz)
ifneq ($(CIFAR10_ARCHIVE),)
export CBAM_TUTORIAL_CIFAR10_ARCHIVE := $(abspath $(CIFAR10_ARCHIVE))
endif

.PHONY: book test install assets chromium colab-env clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Colab's library versions (requirements-colab.txt), for the Colab-like test of the chapters
$(COLAB_STAMP): requirements-colab.txt
	test -x $(COLAB_VENV)/bin/python || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet -r requirements-colab.txt
	touch $(COLAB_STAMP)

colab-env: $(COLAB_STAMP)

$(ASSETS): book/fetch_assets.py
	$(PY) book/fetch_assets.py
	touch $(ASSETS)

assets: $(STAMP) $(ASSETS)

# Debian's chromium for the browser checks (root, or sudo without a password)
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

book: assets
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	$(VENV)/bin/jupyter-book build . --builder html -W --keep-going

# One check after another: run side by side (make -j2), the unit tests and the Colab-like
# check took longer on 2 cores than in sequence, each training with every core; so did the
# unit tests split between two pytest-xdist workers (10:08 against 8:39 in sequence, 2-core EPYC).
test: assets chromium colab-env
	$(PY) -m pytest tests --ignore=tests/browser --ignore=tests/colab_like --durations=15
	COLAB_PYTHON=$(abspath $(COLAB_VENV))/bin/python $(PY) -m pytest tests/colab_like -v -s --durations=0
	$(PY) .ci/stage_book.py $(STAGE)
	$(PY) -m pytest --nbmake --nbmake-timeout=900 --overwrite --durations=0 $(STAGE)/chapters $(STAGE)/book
	$(VENV)/bin/jupyter-book build $(STAGE) --builder html -W --keep-going
	BOOK_HTML=$(STAGE)/_build/html SCREENSHOTS=_build/screenshots $(PY) -m pytest tests/browser

clean:
	rm -rf _build .pytest_cache
