"""Length buckets in lockstep: ranks agree on the bucket count, so every rank makes the same number of
backbone calls per forward (DeepSpeed ZeRO-3 gathers the parameters in every call: a rank calling once
more than another would hang), with the embeddings and gradients of one padded pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_distributed import torchrun

from tdro_suite.modeling.length_buckets import plan_buckets

pytestmark = pytest.mark.slow


def test_an_agreed_count_larger_than_the_rows_gives_empty_buckets() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    assert plan_buckets(mask, min_rows=8) is None  # alone: one pass
    buckets = plan_buckets(mask, min_rows=8, agree=lambda count: torch.full_like(count, 8))
    assert buckets is not None and len(buckets) == 8
    assert [len(b) for b in buckets] == [1, 1, 1, 0, 0, 0, 0, 0]
    assert torch.cat(buckets).tolist() == [1, 0, 2]  # shortest first


def test_ranks_with_different_lengths_make_the_same_backbone_calls(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    torchrun("bucket_lockstep.py", str(tiny_encoder_dir), str(tmp_path))
    ranks = [json.loads((tmp_path / f"lockstep-rank{r}.json").read_text()) for r in range(2)]
    # alone, the ranks would disagree (the check has teeth): one pass against several buckets
    assert ranks[0]["own_calls"] == 1 and ranks[1]["own_calls"] > 1
    # in lockstep both make rank 1's count; rank 0 (3 rows) fills its empty buckets with a dropped row
    assert ranks[0]["lockstep_calls"] == ranks[1]["lockstep_calls"] == ranks[1]["own_calls"]
    assert ranks[0]["rows"] < ranks[0]["lockstep_calls"]
    for record in ranks:  # exactly the one-pass embeddings and gradients, up to float rounding
        assert record["grads"] > 10
        assert record["emb_diff"] < 1e-5 and record["grads_close"], record
