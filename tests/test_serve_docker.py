"""The container files, checked without a Docker engine: the image runs the CLI's serve command with
settings that parse, torch comes from the PyTorch index before the project, and compose has the
volumes and healthcheck it promises. The shipped client example runs against a live server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from test_serve_support import live_server, tiny_settings
from typer.testing import CliRunner

from tdro_suite.serve import commands, create_app

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_image_entrypoint_is_the_cli_serve_command_and_its_cmd_parses(monkeypatch) -> None:
    instructions = dockerfile_instructions()
    entrypoint = json.loads(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in instructions if word == "CMD"))
    assert entrypoint == ["tdro-suite", "serve"]
    assert 'tdro-suite = "tdro_suite.cli:main"' in (ROOT / "pyproject.toml").read_text()

    env = image_env(instructions)
    for key, value in env.items():
        if key.startswith("TDRO_"):
            monkeypatch.setenv(key, value)
    seen = []
    monkeypatch.setattr(commands, "run_server", seen.append)
    app = typer.Typer()
    commands.register(app)
    app.command("noop")(lambda: None)  # keep "serve" a named sub-command, as in the real CLI
    result = CliRunner().invoke(app, [entrypoint[1], *cmd])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.model == "minilm" and settings.host == "0.0.0.0" and settings.port == 8000


def test_torch_comes_from_the_pytorch_index_before_the_project() -> None:
    instructions = dockerfile_instructions()
    runs = [rest for word, rest in instructions if word == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if '--index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"' in r)
    project_step = next(i for i, r in enumerate(runs) if "pip install ." in r)
    assert torch_step < project_step
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG")
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu") and args["TORCH_SPEC"] == "torch==2.13.0"
    assert instructions[1] == ("FROM", "${BASE_IMAGE}")  # the CUDA base is one --build-arg away
    assert any(word == "HEALTHCHECK" and "/ready" in rest for word, rest in instructions)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_compose_has_volumes_healthcheck_and_a_loopback_port() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    service = compose["services"]["retriever"]
    targets = {volume.split(":")[1] for volume in service["volumes"]}
    assert targets == {"/models", "/indexes"}
    command = service["command"]
    assert command[command.index("--index") + 1].startswith("/indexes/")
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and "http://127.0.0.1:8000/ready" in check["test"][-1]
    assert check["start_period"] and check["retries"] >= 1
    assert service["ports"] == ["127.0.0.1:${TDRO_SERVE_PORT:-8000}:8000"]
    gpu = compose["services"]["retriever-gpu"]
    assert gpu["build"]["args"]["BASE_IMAGE"].startswith("nvidia/cuda")
    assert gpu["volumes"] == service["volumes"] and gpu["healthcheck"] == check


def test_example_config_is_valid_serve_settings() -> None:
    from tdro_suite.serve import load_serve_settings

    settings = load_serve_settings(ROOT / "docker" / "examples" / "serve.yaml")
    assert settings.model == "minilm" and settings.truncate


@pytest.mark.slow
def test_example_client_runs_against_a_live_server(tmp_path, tiny_encoder_dir) -> None:
    app = create_app(tiny_settings(tiny_encoder_dir, index=tmp_path / "index"))
    with live_server(app) as base:
        done = subprocess.run(
            [sys.executable, str(ROOT / "docker" / "examples" / "client.py"), base],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "dimension 32" in done.stdout and "'id': 'paris'" in done.stdout
