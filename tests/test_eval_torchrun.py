"""`tdro-suite eval` under torchrun: two gloo processes split each corpus's shards (encoding and search) and
the first writes the report a single process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("bench", ["beir", "mkqa"])
def test_two_processes_score_what_one_process_scores(tiny_encoder_dir, tmp_path, bench):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TDRO_CACHE_DIR": str(tmp_path / "cache")}
    common = ["eval", "--bench", str(FIXTURES / bench), "-m", str(tiny_encoder_dir), "--shard-size", "3",
              "--device", "cpu", "--dtype", "float32"]
    multi, single = tmp_path / "multi", tmp_path / "single"
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "tdro_suite.cli", *common, "--no-cache",
         "-o", str(multi)], env=env, timeout=300, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("(average):") == 1  # only the first process prints the report
    subprocess.run([sys.executable, "-m", "tdro_suite.cli", *common, "-o", str(single)], env=env, timeout=300,
                   check=True, capture_output=True)
    a, b = (json.loads((folder / "results.json").read_text()) for folder in (multi, single))
    assert a["collections"].keys() == b["collections"].keys()
    for name, entry in a["collections"].items():
        assert entry["metrics"] == b["collections"][name]["metrics"], name
        assert entry["documents"] == b["collections"][name]["documents"] > 3  # several shards, both ranks
    assert not list((tmp_path / "cache").glob("tdro-eval-*"))  # the shared scratch of --no-cache is gone
