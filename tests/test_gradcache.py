"""GradCache gives the gradients of the plain (one-pass) loss.

Tolerance: atol 1e-6 + rtol 1e-4 on fp32 (the chunked and the one-pass computations only differ
by floating-point summation order).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tdro_suite.modeling import Encoder
from tdro_suite.modeling.gradcache import gradcache_backward, split_features
from tdro_suite.modeling.losses import InfoNCELoss, text_keys

QUERIES = ["which apple", "which river", "the engine", "a violin", "desert sand", "planet earth"]
PASSAGES = [f"passage {i} about {w}" for i, w in enumerate(["apple", "river", "engine", "violin"] * 3)]


def _grads(enc: Encoder) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}


def _plain(enc: Encoder, q: dict, p: dict, loss_fn) -> tuple[float, dict[str, torch.Tensor]]:
    enc.zero_grad()
    loss = loss_fn(enc(q), enc(p))
    loss.backward()
    return loss.item(), _grads(enc)


def _cached(enc: Encoder, q: dict, p: dict, loss_fn, chunk: int) -> tuple[float, dict[str, torch.Tensor]]:
    enc.zero_grad()
    loss = gradcache_backward(enc, enc, loss_fn, q, p, chunk)
    return loss.item(), _grads(enc)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.fixture()
def inputs(tiny_encoder_dir: Path):
    enc = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    q = enc.tokenize(QUERIES, max_length=16)
    p = enc.tokenize(PASSAGES, max_length=16)
    keys = text_keys(PASSAGES)
    return enc, q, p, lambda qr, pr: InfoNCELoss(0.05)(qr, pr, keys)


def test_split_features_keeps_padding() -> None:
    feats = {"input_ids": torch.arange(10).view(5, 2), "attention_mask": torch.ones(5, 2)}
    chunks = split_features(feats, 2)
    assert [c["input_ids"].shape[0] for c in chunks] == [2, 2, 1]
    assert torch.equal(torch.cat([c["input_ids"] for c in chunks]), feats["input_ids"])


def test_gradcache_matches_plain_gradients_in_small_chunks(inputs) -> None:
    enc, q, p, loss_fn = inputs
    enc.eval()  # no dropout: one pass and chunked passes compute the same function
    loss_a, plain = _plain(enc, q, p, loss_fn)
    loss_b, cached = _cached(enc, q, p, loss_fn, chunk=4)
    assert loss_b == pytest.approx(loss_a, abs=1e-6)
    _assert_same(plain, cached)


def test_gradcache_replays_dropout_masks(inputs) -> None:
    """With dropout on and one chunk per side, GradCache must draw the masks of the plain run — twice."""
    enc, q, p, loss_fn = inputs
    enc.train()
    torch.manual_seed(5)
    _, plain = _plain(enc, q, p, loss_fn)
    torch.manual_seed(5)
    _, cached = _cached(enc, q, p, loss_fn, chunk=len(PASSAGES))
    _assert_same(plain, cached)
    # and the RNG continues where one plain step would leave it
    torch.manual_seed(5)
    _plain(enc, q, p, loss_fn)
    after_plain = torch.rand(1)
    torch.manual_seed(5)
    _cached(enc, q, p, loss_fn, chunk=len(PASSAGES))
    assert torch.equal(torch.rand(1), after_plain)


def zero_dropout_copy(src: Path, dst: Path) -> Path:
    """A copy of a BERT folder with dropout switched off (so chunked and one-pass runs are comparable)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_finetune_with_gradcache_follows_the_plain_run(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))
    from train_data import write_tasks

    from tdro_suite.runtime.metrics import read_metrics
    from tdro_suite.train.config import FinetuneConfig
    from tdro_suite.train.finetune import run_finetune

    model = zero_dropout_copy(tiny_encoder_dir, tmp_path / "enc")
    data = write_tasks(tmp_path / "data", per_task=8)
    losses = []
    for gradcache in (False, True):
        out = tmp_path / f"run-{gradcache}"
        run_finetune(FinetuneConfig(
            model=str(model), data=[str(data)], output_dir=str(out), max_steps=3, per_device_batch_size=6,
            hard_negatives=1, query_max_length=16, passage_max_length=16, learning_rate=1e-3, progress=False,
            gradcache=gradcache, gradcache_chunk_size=4,
        ))
        losses.append([r["loss"] for r in read_metrics(out / "metrics.jsonl")])
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)
