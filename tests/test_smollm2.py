"""The bundled SmolLM2-135M: GGUF → cached safetensors once, then encodes with last-token pooling."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


def test_smollm2_converts_once_and_encodes(tmp_path_factory, monkeypatch) -> None:
    from tdro_suite.modeling import Encoder
    from tdro_suite.modeling.resolve import resolve_model

    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    folder = resolve_model("smollm2-135m")
    weights = folder / "model.safetensors"
    assert weights.is_file() and (folder / "tokenizer.json").is_file()
    stamp = weights.stat().st_mtime_ns
    start = time.perf_counter()
    assert resolve_model("smollm2-135m") == folder
    assert time.perf_counter() - start < 1.0  # the cached folder is reused, not converted again
    assert weights.stat().st_mtime_ns == stamp

    enc = Encoder.from_pretrained("smollm2-135m", device="cpu")
    assert enc.pooling == "lasttoken" and enc.dimension == 576
    ids = enc.tokenize(["A man is eating food."])["input_ids"][0].tolist()
    assert ids[-1] == enc.tokenizer.eos_token_id and ids.count(enc.tokenizer.eos_token_id) == 1
    v = enc.encode(["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell."])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
