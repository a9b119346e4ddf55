"""The README's commands still parse against the CLI, its Python example compiles, docs/cli.md is current."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from tdro_suite.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def readme_cli_calls() -> list[list[str]]:
    """Every `tdro-suite ...` or `-m tdro_suite.cli ...` invocation in the README's bash blocks, as argv."""
    calls = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].split(" | ", 1)[-1].strip()
            match = re.search(r"(?:^|\s)(?:tdro-suite|-m tdro_suite\.cli)\s+(.*)$", line)
            if match:
                calls.append(shlex.split(match.group(1)))
    return calls


def parse(argv: list[str]) -> None:
    """Parse like the CLI would before running, without running anything (typer vendors click's classes)."""
    command = typer.main.get_command(app)
    ctx = command.make_context("tdro-suite", list(argv))
    while hasattr(command, "resolve_command"):  # a group: descend into the sub-command
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        name, command, rest = command.resolve_command(ctx, [*protected, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)


@pytest.mark.parametrize("argv", [["finetune", "--bogus"], ["data", "validate", "--nope"], ["eval", "--bench"]])
def test_parse_rejects_what_the_cli_rejects(argv: list[str]) -> None:
    with pytest.raises(typer.exceptions.TyperException):
        parse(argv)


def test_readme_has_cli_examples() -> None:
    commands = {call[0] for call in readme_cli_calls()}
    assert {"env", "encode", "optimize", "finetune", "index", "search", "eval", "serve", "pipeline", "data"} <= commands


@pytest.mark.parametrize("argv", readme_cli_calls(), ids=lambda a: " ".join(a)[:60])
def test_readme_cli_example_parses(argv: list[str]) -> None:
    parse(argv)


def test_readme_python_examples_compile() -> None:
    for block in _blocks("python"):
        compile(block, str(README), "exec")


def test_cli_reference_is_generated_from_the_app(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    typer_bin = Path(sys.executable).with_name("typer")
    subprocess.run(
        [str(typer_bin), "tdro_suite.cli", "utils", "docs", "--name", "tdro-suite", "--output", str(out)],
        check=True, capture_output=True, timeout=300, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )
    assert out.read_text() == (ROOT / "docs" / "cli.md").read_text(), "docs/cli.md is stale: run `make docs`"
