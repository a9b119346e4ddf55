"""Byte-reproducibility of the bundle: rebuilding one task with the builder's seed gives the committed file.

The code-search task needs only the Python standard library and bm25s (the `build-data` extra), so it can
be rebuilt here in seconds; the full check over every file (which needs the Debian sources) is
`python eval/data/build_offline.py --verify`, and `eval/data/build_report.json` lists every file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPORT = json.loads((REPO / "eval" / "data" / "build_report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def builder():
    pytest.importorskip("bm25s", reason="rebuilding needs the build-data extra")
    pytest.importorskip("chatterbot_corpus", reason="rebuilding needs the build-data extra")
    if sys.version.split()[0] != REPORT["python"]:
        pytest.skip(f"the stdlib task is byte-identical only on Python {REPORT['python']}")
    sys.path.insert(0, str(REPO / "eval" / "data"))
    import build_offline

    return build_offline


def test_report_hashes_match_committed_files() -> None:
    bundled = REPO / "tdro_suite" / "bundled"
    for name, digest in REPORT["sha256"].items():
        assert hashlib.sha256((bundled / name).read_bytes()).hexdigest() == digest, name


def test_code_task_rebuilds_byte_identical(builder, tmp_path: Path) -> None:
    plan = builder.code_task(builder.src.stdlib_code_units())
    assert REPORT["decontamination"]["per_task"][plan.info.name]["candidates"] == len(plan.candidates)
    removed = REPORT["decontamination"]["per_task"][plan.info.name]
    assert removed["removed_exact"] == removed["removed_near"] == 0  # so the candidates are the build's
    builder.write_examples(tmp_path / "code.jsonl.gz", builder.realise(plan, REPORT["seed"]))
    committed = REPO / "tdro_suite" / "bundled" / "train" / "code_python_stdlib.jsonl.gz"
    assert (tmp_path / "code.jsonl.gz").read_bytes() == committed.read_bytes()
