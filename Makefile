# Two commands that work on a fresh machine; each sets up .venv first when needed.
#   make demo   harmonize a sample portrait clip with the built-in methods -> harmovid-demo.mp4
#   make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test
demo: $(VENV)/.harmovid-ready
	$(VENV)/bin/harmovid demo --output harmovid-demo.mp4 --overwrite

test: $(VENV)/.harmovid-ready
	$(PY) -m pytest -q

$(VENV)/.harmovid-ready: pyproject.toml requirements-nodeps.txt scripts/setup-venv.sh
	HARMOVID_VENV=$(VENV) bash scripts/setup-venv.sh
