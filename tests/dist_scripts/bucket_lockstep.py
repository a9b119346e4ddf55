"""Launched by tests/test_bucket_lockstep.py under torchrun (gloo, CPU): ranks with different length profiles.

Rank 0 embeds a few texts of one length (alone it would make ONE backbone call), rank 1 many texts of
mixed lengths (alone it splits them into several buckets). Through `EncoderModule` (lockstep) both must
make the same number of backbone calls per forward; called directly (no lockstep) they differ. Each rank
writes its call counts and how far its embeddings and gradients are from one padded pass.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tdro_suite.modeling.encoder import Encoder
from tdro_suite.runtime.module import EncoderModule

UNIFORM = ["a dog ran", "el gato", "the fox"]  # 3 rows: fewer than any split's bucket count
MIXED = [
    "a dog",
    "the quick brown fox jumps over the lazy dog " * 4,
    "love",
    "retrieval augmented generation needs a dense retriever and a good index of passages",
    "def add(a, b): return a + b",
    "a man is eating food and a woman is reading a book " * 3,
] * 11


def main(model: str, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    # eval mode: no dropout, passes are comparable; fp32 as in training (bf16 weights would round the gradients)
    encoder = Encoder.from_pretrained(model, device="cpu", dtype="float32")
    calls: list[int] = []
    original = encoder.backbone.forward

    def counting_forward(*args, **kwargs):
        calls[-1] += 1
        return original(*args, **kwargs)

    encoder.backbone.forward = counting_forward
    features = encoder.tokenize(UNIFORM if rank == 0 else MIXED, max_length=64)

    def embed(fn) -> tuple[int, torch.Tensor, list[torch.Tensor]]:
        encoder.zero_grad()
        calls.append(0)
        emb = fn()
        (emb * torch.linspace(-1, 1, emb.numel()).view_as(emb)).sum().backward()
        return calls[-1], emb.detach(), [p.grad.clone() for p in encoder.parameters() if p.grad is not None]

    module = EncoderModule(encoder)
    lockstep_calls, emb, grads = embed(lambda: module(queries=features)[0])
    own_calls, _, _ = embed(lambda: encoder(features))
    inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    _, emb_one, grads_one = embed(lambda: F.normalize(encoder._embed(inputs), dim=-1))
    record = {
        "lockstep_calls": lockstep_calls,
        "own_calls": own_calls,
        "rows": len(emb),
        "emb_diff": float((emb - emb_one).abs().max()),
        # within float rounding of sums over 66 x 64 tokens, scaled by each parameter's largest gradient
        "grads_close": all(
            float((a - b).abs().max()) <= 1e-6 + 2e-4 * float(b.abs().max())
            for a, b in zip(grads, grads_one, strict=True)
        ),
        "grads": len(grads),
    }
    (out / f"lockstep-rank{rank}.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    from clean_exit import exit_now  # beside this script, which Python puts first on sys.path

    main(sys.argv[1], Path(sys.argv[2]))
    exit_now()
