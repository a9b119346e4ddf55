"""The README's commands still parse against the CLI, its Python example compiles, docs/cli.md is current,
and every training command of its GPU section passes `--dry-run` under the environment its launcher sets."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tdro_suite.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GPU_SECTION = "### Many GPUs and many machines"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _command_lines(block: str) -> list[str]:
    """A bash block's lines with continuations joined and comments dropped."""
    lines = (line.split(" #", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def readme_cli_calls() -> list[list[str]]:
    """Every `tdro-suite ...` or `-m tdro_suite.cli ...` invocation in the README's bash blocks, as argv."""
    calls = []
    for block in _blocks("bash"):
        for line in _command_lines(block):
            line = line.split(" | ", 1)[-1].strip()
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


def _option(tokens: list[str], name: str, default: str) -> str:
    """`--name=V` or `--name V` from a launcher's arguments (torchrun also spells them with underscores)."""
    spellings = {name, name.replace("-", "_")}
    for i, token in enumerate(tokens):
        key, eq, value = token.partition("=")
        if key in spellings:
            return value if eq else tokens[i + 1]
    return default


def launcher_environment(launcher: list[str]) -> dict[str, str]:
    """What torchrun / `accelerate launch` give rank 0: WORLD_SIZE, LOCAL_WORLD_SIZE, RANK, DeepSpeed's variables."""
    if launcher[0] == "torchrun":
        local = int(_option(launcher, "--nproc-per-node", "1"))
        world = local * int(_option(launcher, "--nnodes", "1"))
        return {"WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(local), "RANK": "0"}
    assert launcher[:2] == ["accelerate", "launch"], launcher
    config = yaml.safe_load((ROOT / _option(launcher, "--config_file", "")).read_text())
    world = int(config["num_processes"])  # accelerate counts the processes of all machines
    env = {"WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world // int(config["num_machines"])), "RANK": "0"}
    if config["distributed_type"] == "DEEPSPEED":
        env["ACCELERATE_USE_DEEPSPEED"] = "true"
        env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] = config["deepspeed_config"]["deepspeed_config_file"]
    return env


def gpu_section_calls() -> list[tuple[dict[str, str], list[str]]]:
    """The GPU section's commands: the environment their launcher sets, and the tdro-suite arguments."""
    section = README.read_text(encoding="utf-8").split(GPU_SECTION, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None, f"no bash block under {GPU_SECTION!r}"
    calls = []
    for line in _command_lines(block.group(1)):
        tokens = shlex.split(line)
        start = next(i for i in range(len(tokens) - 1) if tokens[i : i + 2] == ["-m", "tdro_suite.cli"])
        calls.append((launcher_environment(tokens[:start]), tokens[start + 2 :]))
    return calls


def _stage_inputs(argv: list[str]) -> None:
    """In the (temporary) working directory, what the paper configs name from earlier stages and the user.

    The data folder becomes the bundled mixture, the stage-0 reference a model folder (a dry run reads
    only its config), stage 1's weights a mixture over the bundled tasks; the configs themselves are
    read through a `configs` link to the repository's.
    """
    from tdro_suite.bundled import train_dir
    from tdro_suite.data.mixture import Mixture, write_mixture
    from tdro_suite.data.tasks import load_tasks

    config = yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text())
    for folder in map(Path, config.get("data", [])):
        if not folder.exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.symlink_to(train_dir(), target_is_directory=True)
    if config.get("reference") and not Path(config["reference"]).exists():
        reference = Path(config["reference"])
        reference.mkdir(parents=True)
        (reference / "config.json").write_text('{"model_type": "qwen2"}')
    if config.get("mixture") and not Path(config["mixture"]).exists():
        tasks = load_tasks([train_dir()])
        weights = tuple(float(len(tasks) - i) for i in range(len(tasks)))
        write_mixture(config["mixture"], Mixture(tuple(t.name for t in tasks), weights, (0,) * len(tasks)))


def test_gpu_section_runs_the_three_paper_stages_and_an_index() -> None:
    commands = [argv[0] for _, argv in gpu_section_calls()]
    assert {"finetune", "optimize"} <= set(commands) <= {"finetune", "optimize", "index"}
    configs = {argv[argv.index("--config") + 1] for _, argv in gpu_section_calls() if "--config" in argv}
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "configs" / "paper").glob("*top70.yaml")} <= configs
    assert {"configs/paper/finetune-qwen1.5-0.5b-uniform.yaml", "configs/paper/optimize-qwen1.5-0.5b.yaml"} <= configs


@pytest.mark.parametrize(
    ("env", "argv"),
    [call for call in gpu_section_calls() if call[1][0] in ("finetune", "optimize")],
    ids=lambda value: " ".join(value)[:70] if isinstance(value, list) else None,
)
def test_gpu_section_command_passes_its_dry_run(
    env: dict[str, str], argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command as written, launcher stripped but its environment kept, with --dry-run: exit 0, the plan
    counts every process (global batch 2048 as in the paper) and names the launcher's layout."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    _stage_inputs(argv)
    result = CliRunner().invoke(
        app, [*argv, "--dry-run"], env={**env, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "The plan is valid" in result.output and "problem:" not in result.output
    assert "2048 queries" in result.output
    deepspeed = "ACCELERATE_USE_DEEPSPEED" in env
    assert ("DeepSpeed ZeRO-2" if deepspeed else "DDP") in result.output
    assert f"{env['WORLD_SIZE']} processes" in result.output
    if env["WORLD_SIZE"] != env["LOCAL_WORLD_SIZE"]:
        assert "2 machines × 8" in result.output
