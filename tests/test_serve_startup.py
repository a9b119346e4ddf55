"""A fatal start-up error stops `tdro-suite serve` (the image's entrypoint) with a non-zero exit and the
reason on stderr, with one worker or several: an orchestrator must see a dead process, not a live one
that answers 503 forever. The server runs for real on 127.0.0.1 with a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.serve.server import STARTUP_FAILURE_EXIT_CODE, ServeStartupError, report_fatal_startup

EXIT_TIMEOUT_S = 150  # importing torch in 1 + N processes on a loaded 2-core machine, then the tiny model


def serve_until_exit(args: list[str]) -> tuple[int, str, float]:
    """Run `tdro-suite serve ARGS` on 127.0.0.1 (port 0: any free port) until it exits on its own."""
    command = [sys.executable, "-m", "tdro_suite.cli", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, stderr = proc.communicate(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"tdro-suite serve was still running after {EXIT_TIMEOUT_S} s:\n{stderr[-3000:]}")
    return proc.returncode, stderr, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_an_index_built_by_another_model_stops_the_server(tmp_path, tiny_encoder_dir, workers) -> None:
    vectors = np.eye(3, 32, dtype=np.float32)
    DenseIndex.build(vectors, ["a", "b", "c"], manifest={"model": "someone-else"}).save(tmp_path / "idx")
    args = ["--model", str(tiny_encoder_dir), "--max-length", "64", "--index", str(tmp_path / "idx"),
            "--workers", str(workers), "--torch-threads", "1"]
    code, stderr, seconds = serve_until_exit(args)
    assert code == STARTUP_FAILURE_EXIT_CODE, stderr[-3000:]
    # the worker's log line and the command's own error both name the cause
    assert stderr.count("this index was built with model 'someone-else'") >= 2, stderr[-3000:]
    assert "error: The server stopped because start-up failed" in stderr
    assert "Uvicorn running on http://127.0.0.1:" in stderr  # it did listen: /ready answered during loading
    assert "Traceback" not in stderr
    print(f"{workers} worker(s): exited {code} after {seconds:.1f} s")


@pytest.mark.slow
def test_a_broken_index_file_stops_the_server(tmp_path, tiny_encoder_dir) -> None:
    folder = tmp_path / "idx"
    DenseIndex.build(np.eye(3, 32, dtype=np.float32), ["a", "b", "c"],
                     manifest={"model": str(tiny_encoder_dir)}).save(folder)
    for path in folder.iterdir():  # every file but the manifest is garbage: FAISS cannot read the index
        if path.is_file() and path.name != "manifest.json":
            path.write_bytes(b"not a faiss index")
    code, stderr, _ = serve_until_exit(["--model", str(tiny_encoder_dir), "--max-length", "64",
                                        "--index", str(folder), "--torch-threads", "1"])
    assert code != 0, stderr[-3000:]
    assert "start-up failed" in stderr, stderr[-3000:]


def test_the_failure_reaches_the_supervisor_through_the_channel(tmp_path, monkeypatch) -> None:
    """report_fatal_startup appends the reason (one line) and interrupts the supervisor's process."""
    from tdro_suite.serve import server

    channel = tmp_path / "fatal"
    channel.write_text("")
    sent = []
    monkeypatch.setenv(server.FATAL_FILE_ENV_VAR, str(channel))
    monkeypatch.setenv(server.SUPERVISOR_PID_ENV_VAR, "4242")
    monkeypatch.setattr(server.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    report_fatal_startup("index x\nwas built with model y")
    report_fatal_startup("index x was built with model y")  # a second worker, the same reason
    assert sent == [(4242, server.signal.SIGINT)] * 2
    assert server._failures(str(channel)) == "index x was built with model y"
    with pytest.raises(ServeStartupError, match="start-up failed: index x was built"):
        server._raise_on_failure(str(channel))
    server._raise_on_failure(None)  # no channel: nothing to report


def test_without_the_channel_the_worker_exits_with_the_startup_failure_code(monkeypatch) -> None:
    from tdro_suite.serve import server

    monkeypatch.delenv(server.FATAL_FILE_ENV_VAR, raising=False)
    exits = []
    monkeypatch.setattr(server.os, "_exit", exits.append)
    report_fatal_startup("no model")
    assert exits == [STARTUP_FAILURE_EXIT_CODE]
