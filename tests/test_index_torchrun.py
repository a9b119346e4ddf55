"""`tdro-suite index` under torchrun: two processes split the shards and rank 0 writes the same index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tdro_suite.index.build import build_index, work_dir_for
from tdro_suite.index.dense_index import DenseIndex

CORPUS = Path(__file__).parent / "fixtures" / "bench" / "beir" / "tinyfacts" / "corpus.jsonl"


@pytest.mark.slow
def test_two_processes_build_the_single_process_index(tiny_encoder_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TDRO_CACHE_DIR": str(tmp_path / "cache")}
    common = ["index", "--corpus", str(CORPUS), "-m", str(tiny_encoder_dir), "--shard-size", "3", "--keep-shards",
              "--device", "cpu", "--dtype", "float32"]  # fp32 like this process (conftest)
    multi, single = tmp_path / "multi", tmp_path / "single"
    subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "tdro_suite.cli", *common, "-o", str(multi)],
        check=True, env=env, timeout=300, capture_output=True,
    )
    from tdro_suite.modeling import Encoder

    build_index(Encoder.from_pretrained(tiny_encoder_dir, device="cpu"), CORPUS, single, shard_size=3,
                show_progress=False)
    shards = sorted(p.name for p in work_dir_for(multi).glob("shard-*.npy"))
    assert shards == [f"shard-{i:05d}.npy" for i in range(4)]  # 12 documents / 3 per shard, from both ranks
    a, b = DenseIndex.load(multi), DenseIndex.load(single)
    assert a.ids == b.ids and json.loads((multi / "manifest.json").read_text())["count"] == 12
    queries = np.eye(a.dimension, dtype=np.float32)[:5]
    (scores_a, ids_a), (scores_b, ids_b) = a.search(queries, 5), b.search(queries, 5)
    assert ids_a == ids_b and np.allclose(scores_a, scores_b, atol=1e-5)
