"""`attn_implementation`: the backbone's attention kernel, a model setting (training, encode, index, serve);
it changes results slightly, so a resumed training run must keep it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdro_suite.index.config import IndexConfig
from tdro_suite.modeling.config import EncodeConfig
from tdro_suite.runtime.build import build_trainable_encoder
from tdro_suite.runtime.config import ModelConfig, result_settings
from tdro_suite.serve.settings import ServeSettings

TEXTS = ["a dog", "the quick brown fox jumps over the lazy dog", "el gato", "def add(a, b): return a + b"]


def test_attention_kernel_is_configured_and_fingerprinted(tiny_encoder_dir: Path) -> None:
    default = ModelConfig(model=str(tiny_encoder_dir))
    assert default.attn_implementation == "sdpa"  # what transformers picked by default before the option
    eager = ModelConfig(model=str(tiny_encoder_dir), attn_implementation="eager")
    assert result_settings(eager)["attn_implementation"] == "eager"  # changes results: a resume must keep it
    built = {cfg.attn_implementation: build_trainable_encoder(cfg, torch.device("cpu"), bf16=False)
             for cfg in (default, eager)}
    assert {k: e.base_model.config._attn_implementation for k, e in built.items()} == {"sdpa": "sdpa", "eager": "eager"}
    features = built["sdpa"].tokenize(TEXTS, max_length=16)
    for encoder in built.values():
        encoder.eval()
    with torch.no_grad():  # the same model either way, up to float rounding
        torch.testing.assert_close(built["eager"](features), built["sdpa"](features), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        ModelConfig(attn_implementation="flash")


def test_inference_commands_take_the_option() -> None:
    assert EncodeConfig(output="v.npy", attn_implementation="eager").attn_implementation == "eager"
    assert IndexConfig(corpus=["c.jsonl"], output="idx").attn_implementation == "sdpa"
    assert ServeSettings(attn_implementation="eager").attn_implementation == "eager"
