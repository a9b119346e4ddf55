# tdro-suite retriever service: `tdro-suite serve` (OpenAI-compatible embeddings + dense search).
#
# CPU (default):  docker build -t tdro-suite .
# CUDA:           docker build -t tdro-suite:cuda \
#                   --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# Run:            docker run -p 127.0.0.1:8000:8000 -v $PWD/indexes:/indexes tdro-suite --model minilm
#
# torch is installed FIRST from the PyTorch wheel index chosen by TORCH_INDEX_URL, so installing the
# project afterwards finds its torch requirement satisfied instead of pulling a multi-GB CUDA build.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/models/hf \
    TDRO_CACHE_DIR=/models/cache \
    TOKENIZERS_PARALLELISM=false \
    TDRO_HOST=0.0.0.0 \
    TDRO_PORT=8000

# CUDA base images come without Python; the python:* images already have it.
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && pip install --upgrade pip

RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tdro_suite ./tdro_suite
RUN pip install . && python -c "import tdro_suite.serve, torch; print('torch', torch.__version__)"

RUN useradd --create-home --uid 1000 tdro \
    && mkdir -p /models /indexes \
    && chown tdro:tdro /models /indexes
USER tdro
VOLUME ["/models", "/indexes"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TDRO_PORT', '8000') + '/ready', timeout=4)"]

# The same command the tests start; options after the image name (or CMD) are its options, and
# every setting can also come from a TDRO_* environment variable (TDRO_MODEL, TDRO_INDEX, TDRO_API_KEY, ...).
ENTRYPOINT ["tdro-suite", "serve"]
CMD ["--model", "minilm"]
