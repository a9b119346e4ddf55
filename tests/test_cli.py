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


# --- options generated from the config models (tdro_suite.cli_options) ---

HELP_EVERYWHERE = """
import sys
import typer
from tdro_suite.cli import app

root = typer.main.get_command(app)

def paths(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, [*path, name])

seen = []
for path in paths(root, []):
    try:
        root.main([*path, "--help"], prog_name="tdro-suite")
    except SystemExit as exc:
        assert exc.code == 0, (path, exc.code)
    seen.append(" ".join(path))
print("COMMANDS", "|".join(seen))
print("HEAVY", " ".join(m for m in ("torch", "faiss", "transformers") if m in sys.modules))
"""


def test_help_of_every_command_imports_neither_torch_nor_faiss() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HELP_EVERYWHERE], capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "COLUMNS": "100"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("COMMANDS ", "HEAVY ")))
    commands = set(lines["COMMANDS"].split("|"))
    assert {"", "env", "encode", "optimize", "finetune", "index", "search", "eval", "serve", "pipeline",
            "data", "data validate", "data stats"} <= commands
    assert lines["HEAVY"].strip() == "", f"--help imported {lines['HEAVY']}"


def _commands_and_models() -> list[tuple[str, type]]:
    from tdro_suite.dro.config import OptimizeConfig
    from tdro_suite.evaluation.config import EvalConfig
    from tdro_suite.index.config import IndexConfig, SearchConfig
    from tdro_suite.modeling.config import EncodeConfig
    from tdro_suite.pipeline.config import PipelineConfig
    from tdro_suite.serve.settings import ServeSettings
    from tdro_suite.train.config import FinetuneConfig

    return [("encode", EncodeConfig), ("optimize", OptimizeConfig), ("finetune", FinetuneConfig),
            ("index", IndexConfig), ("search", SearchConfig), ("eval", EvalConfig), ("serve", ServeSettings),
            ("pipeline", PipelineConfig)]


@pytest.mark.parametrize(("name", "model"), _commands_and_models(), ids=lambda x: getattr(x, "__name__", x))
def test_every_config_field_is_an_option_of_its_command(name: str, model: type) -> None:
    import typer

    from tdro_suite.cli import app
    from tdro_suite.cli_options import cli_type, option_name

    command = typer.main.get_command(app).commands[name]
    params = {p.name: p for p in command.params}
    for field, info in model.model_fields.items():
        if cli_type(info.annotation) is None:  # secrets, mappings: YAML only
            assert field not in params
            continue
        assert field in params, f"{name}: no option for {model.__name__}.{field}"
        param = params[field]
        assert param.default is None  # "not given": the YAML file or the model default decides
        if param.param_type_name == "option":
            assert option_name(field) in param.opts
            assert (info.description or "")[:20].replace("[", "\\[") in (param.help or "")


def _toy_app(seen: list):
    """A command generated from a two-class model, with every kind of field and every `Opt` feature."""
    from typing import Literal

    import typer
    from pydantic import Field, PositiveInt, SecretStr

    from tdro_suite.cli_options import JSON_OPTION, Opt, config_command
    from tdro_suite.config import CommandConfig

    class KnobsConfig(CommandConfig):
        depth: PositiveInt = Field(3, description="How deep.")

    class ToyConfig(KnobsConfig):
        name: str = Field(description="A name.")
        mode: Literal["a", "b"] = "a"
        fast: bool = False
        tags: list[str] = Field(default_factory=list)
        files: list[str] = Field(default_factory=list)
        max_steps: PositiveInt = 10
        token: SecretStr | None = None
        table: dict[str, int] = Field(default_factory=dict)

    app = typer.Typer()

    @config_command(ToyConfig, options={
        "files": Opt(argument=True), "tags": Opt(("-t",), split=","), "fast": Opt(("--fast/--slow",)),
        "max_steps": Opt(deprecated=("--steps",)), "renamed_later": Opt(("-r",)),
    })
    def toy(cfg: ToyConfig, as_json: bool = JSON_OPTION) -> None:
        """A toy."""
        seen.append((cfg, as_json))

    app.command("toy")(toy)
    app.command("other")(lambda: None)
    return app


def test_generated_options_parse_types_flags_lists_and_aliases(tmp_path) -> None:
    from typer.testing import CliRunner

    seen: list = []
    app = _toy_app(seen)
    result = CliRunner().invoke(app, [
        "toy", "f1", "f2", "--name", "n", "--mode", "b", "--slow", "-t", "x,y", "--tags", "z", "--depth", "5",
        "--steps", "7", "--json",
    ])
    assert result.exit_code == 0, result.output
    cfg, as_json = seen.pop()
    assert (cfg.name, cfg.mode, cfg.fast, cfg.tags, cfg.files, cfg.depth, cfg.max_steps, as_json) == (
        "n", "b", False, ["x", "y", "z"], ["f1", "f2"], 5, 7, True
    )
    assert "--steps is deprecated, use --max-steps" in result.output

    config = tmp_path / "toy.yaml"
    config.write_text("name: from-file\nmode: b\ndepth: 9\nfast: true\n")
    result = CliRunner().invoke(app, ["toy", "-c", str(config), "--mode", "a"])
    assert result.exit_code == 0, result.output
    cfg, _ = seen.pop()  # defaults < YAML < command line; options not given stay out of the way
    assert (cfg.name, cfg.mode, cfg.depth, cfg.fast, cfg.max_steps, cfg.tags) == ("from-file", "a", 9, True, 10, [])

    for bad in (["--mode", "c"], ["--token", "s"], ["--table", "x"], ["--depth", "many"]):
        result = CliRunner().invoke(app, ["toy", "--name", "n", *bad])
        assert result.exit_code == 2, (bad, result.output)  # usage errors stay click's


def test_generated_help_shows_descriptions_defaults_and_mixins_once() -> None:
    import typer

    from tdro_suite.common.errors import ConfigError

    app = _toy_app([])
    command = typer.main.get_command(app).commands["toy"]
    names = [p.name for p in command.params]
    assert names[:3] == ["files", "config", "name"]  # positional, --config, then the model's own fields
    assert names.index("max_steps") < names.index("depth")  # a mixin's fields after the model's own
    params = {p.name: p for p in command.params}
    assert params["depth"].help == "How deep. \\[default: 3]" and params["depth"].rich_help_panel == "Knobs"
    assert "\\[required here or in --config]" in params["name"].help
    assert params["fast"].opts == ["--fast"] and params["fast"].secondary_opts == ["--no-fast", "--slow"]
    assert params["max_steps_deprecated_0"].hidden
    with pytest.raises(ConfigError, match="key 'name'"):  # a config error names the key
        from typer.testing import CliRunner

        raise CliRunner().invoke(app, ["toy"]).exception


def test_serve_options_keep_defaults_yaml_environment_command_line_order(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tdro_suite.cli import app
    from tdro_suite.serve import commands

    seen: list = []
    monkeypatch.setattr(commands, "run_server", seen.append)
    config = tmp_path / "serve.yaml"
    config.write_text("port: 7000\nmax_batch_size: 8\nworkers: 3\n")
    monkeypatch.setenv("TDRO_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("TDRO_PORT", "7100")
    result = CliRunner().invoke(app, ["serve", "--config", str(config), "--port", "7200", "--no-access-log"])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.port, settings.max_batch_size, settings.workers, settings.access_log) == (7200, 16, 3, False)
    assert "--api-key " not in CliRunner().invoke(app, ["serve", "--help"]).output  # a key never goes on a command line


def test_optimize_reference_on_the_command_line_replaces_train_reference_from_the_file(tmp_path) -> None:
    from tdro_suite.dro.commands import load_optimize_config

    config = tmp_path / "optimize.yaml"
    config.write_text("train_reference: true\n")
    assert load_optimize_config(config, {"reference": "ref"}).train_reference is False
    assert load_optimize_config(config, {}).train_reference is True
