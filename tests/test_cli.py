"""The CLI shell: version, env, encode, and one-paragraph errors with a non-zero exit and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tdro_suite.modeling.encode_texts import read_texts


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tdro_suite.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )


def test_version_and_env_json() -> None:
    from tdro_suite import __version__

    assert run_cli("--version").stdout.strip() == f"tdro-suite {__version__}"
    report = json.loads(run_cli("env", "--json").stdout)
    assert report["default device"] in ("cpu", "cuda", "mps")
    assert report["torch"].startswith("2.")


def test_encode_minilm_from_stdin(tmp_path) -> None:
    out = tmp_path / "vec.npy"
    proc = run_cli(
        "encode", "-", "-o", str(out), "--model", "minilm",
        stdin="A man is eating food.\nA man is eating a piece of bread.\n",
    )
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    assert vectors.shape == (2, 384)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.755, abs=2e-3)
    assert (tmp_path / "vec.ids.txt").read_text().split() == ["1", "2"]


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["encode", "-", "-o", "x.npy", "--model", "no-such-model"], "hi\n", "Unknown model 'no-such-model'"),
        (["encode", "missing.txt", "-o", "x.npy"], None, "Input file not found: missing.txt"),
        (["encode", "-", "-o", "x.npy", "--config", "missing.yaml"], "hi\n", "Config file not found"),
        (["encode", "-", "-o", "x.npy", "--model", "someone/not-downloadable"], "hi\n", "Could not fetch model"),
    ],
)
def test_user_errors_are_one_paragraph_without_traceback(tmp_path, args, stdin, expected) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tdro_suite.cli", *args], input=stdin, capture_output=True, text=True,
        cwd=tmp_path, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_usage_error_prints_usage_not_a_traceback() -> None:
    proc = run_cli("finetune", "--no-such-option")
    assert proc.returncode == 2
    assert "No such option" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_value_names_key_and_file(tmp_path) -> None:
    cfg = tmp_path / "encode.yaml"
    cfg.write_text("batch_size: -3\nbogus: 1\n")
    proc = run_cli("encode", "-", "-o", str(tmp_path / "x.npy"), "--config", str(cfg), stdin="hi\n")
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and "batch_size" in proc.stderr and "unknown key 'bogus'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_read_texts_jsonl_and_errors() -> None:
    from tdro_suite.common.errors import DataError

    ids, texts = read_texts(['{"id": "a", "text": "x"}\n', "\n", '{"text": "y"}\n'], "f.jsonl", "auto", "text", "id")
    assert ids == ["a", "3"] and texts == ["x", "y"]
    with pytest.raises(DataError, match=r"f.jsonl:2: field 'text'"):
        read_texts(['{"text": "x"}', '{"body": "y"}'], "f.jsonl", "jsonl", "text", "id")
    with pytest.raises(DataError, match=r"f.jsonl:1: not valid JSON"):
        read_texts(["{oops"], "f.jsonl", "jsonl", "text", "id")
