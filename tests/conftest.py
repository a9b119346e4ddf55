"""Shared fixtures: tiny models (built once per session) and the real MiniLM (loaded once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def fp32_by_default():
    """Models load in fp32 in this process, as on a CPU without native bf16.

    Tests compare embeddings across paths (batched/single, padding sides, adapters, sentence-transformers)
    at 1e-5, which bf16 weights (the default on AVX512-BF16/AMX CPUs) cannot meet. The bf16 default, and
    that it keeps fp32's embeddings and metrics, is tested in tests/test_inference_dtype.py.
    """
    from tdro_suite.common import device

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(device, "cpu_bf16_flag", lambda: None)
        yield


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_decoder

    return build_tiny_decoder(tmp_path_factory.mktemp("tiny-decoder"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 Encoder, shared by every test that needs real behaviour (do not mutate)."""
    from tdro_suite.modeling import Encoder

    return Encoder.from_pretrained("minilm", device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run several times faster on one thread than on two contended ones (use per module)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
