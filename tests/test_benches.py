"""The encode and serve benchmarks run end to end at toy sizes and print their ratios (speed is never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "eval" / "bench"


def run_bench(script: str, *args: str, timeout: int = 300) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
def test_encode_bench_prints_ratios_and_cosines(tmp_path) -> None:
    out = run_bench("encode_bench.py", "--short", "40", "--long", "8", "--repeats", "1", "--threads", "1",
                    "--json", str(tmp_path / "rows.json"))
    assert "vs sentence-transformers, float32" in out and "target ours >=" in out
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert {row["shape"] for row in rows} == {"short", "long"}
    assert all(row["min_cosine"] >= 0.999 for row in rows)  # every contender embeds the same texts alike
    baseline = [row for row in rows if row["contender"] == "sentence-transformers, float32"]
    assert [row["ratio"] for row in baseline] == [1.0, 1.0]


@pytest.mark.slow
def test_serve_bench_measures_our_server_and_in_process(tmp_path) -> None:
    out = run_bench("serve_bench.py", "--skip-peer", "--shapes", "2x2", "--seconds", "1", "--texts", "50",
                    "--out", str(tmp_path / "serve.json"))
    assert "2x2 ours / in-process:" in out
    results = json.loads((tmp_path / "serve.json").read_text())
    stats = results["shapes"]["2x2"]["tdro-suite serve"]
    assert stats["requests"] > 0 and stats["errors"] == {}
    assert stats["probe_cosine_vs_in_process"] > 0.999


def test_serve_bench_shapes_are_checked() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from serve_bench import parse_shapes
    finally:
        sys.path.remove(str(BENCH))
    assert parse_shapes("32x8,1x1") == [(32, 8), (1, 1)]
    with pytest.raises(SystemExit, match="CLIENTSxINPUTS"):
        parse_shapes("32by8")


@pytest.mark.slow
def test_eval_scale_bench_resumes_without_re_encoding(tmp_path) -> None:
    out = run_bench("eval_scale_bench.py", "--passages", "20000", "--shard-size", "2048", "--kill-after", "3",
                    "--batch-size", "512", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "rows.json"))
    assert "| eval, resumed to the end |" in out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows["interrupted"]["killed"] and rows["interrupted"]["shards_on_disk"] >= 3
    assert rows["resumed"]["finished_shards_re_encoded"] == 0 and rows["resumed"]["shards_on_disk"] == 10
    assert rows["resumed"]["timing"]["corpus_cached"] is False  # the rest was encoded by the second run
    assert rows["baseline_read_corpus"]["documents"] == rows["open_converted"]["documents"] == 20000
