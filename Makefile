# Two commands do all the set-up on a fresh Linux machine (see README.md):
#   make book   build the site into _build/html (creates .venv and installs what it needs)
#   make test   run the unit tests, execute every chapter and build the site with warnings as errors
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test install clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	rm -rf _build
	$(VENV)/bin/jupyter-book build . --builder html -W --keep-going

test: $(STAMP)
	$(PY) -m pytest tests chapters --nbmake --nbmake-timeout=900

clean:
	rm -rf _build .pytest_cache
