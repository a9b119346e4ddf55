"""eval/gpu/check.py without a GPU: its arguments, table, exit code and the YAML it writes (the checks need CUDA)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "eval" / "gpu" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_arguments_and_check_selection(gpu_check: ModuleType) -> None:
    args = gpu_check.parse_args([])
    assert not args.cpu_smoke and args.budget_s == 420.0 and args.child is None
    args = gpu_check.parse_args(["--cpu-smoke", "--only", "build", "finetune", "--budget-s", "60"])
    assert args.cpu_smoke and args.only == ["build", "finetune"] and args.budget_s == 60.0
    names = [c.name for c in gpu_check.select_checks(None, ["zero2", "pytest"])]
    assert names[:3] == ["env", "build", "finetune"] and "zero2" not in names and "pytest" not in names
    with pytest.raises(SystemExit, match="unknown check"):
        gpu_check.select_checks(["nope"], None)


def test_every_check_has_a_timeout_in_both_modes(gpu_check: ModuleType) -> None:
    for sizes in (gpu_check.GPU, gpu_check.CPU_SMOKE):
        assert set(sizes.timeouts) == set(gpu_check.BY_NAME)
    assert gpu_check.GPU.device == "cuda" and gpu_check.GPU.precision == "bf16"
    assert (gpu_check.GPU.bench_hidden, gpu_check.GPU.bench_layers, gpu_check.GPU.bench_intermediate) == (896, 24, 4864)


def test_table_and_exit_code(gpu_check: ModuleType) -> None:
    Row = gpu_check.Row
    rows = [
        Row("finetune", gpu_check.OK, "20 steps | fast", 12.34, "note"),
        Row("zero2", gpu_check.NOT_RUN, "deepspeed is not importable", 0.0),
    ]
    table = gpu_check.render_table(rows, ["# title"])
    assert table.startswith("# title\n")
    assert "| check | result | seconds | note |" in table
    assert "| finetune | ok: 20 steps \\| fast | 12.3 | note |" in table
    assert "1 ok, 0 failed, 1 not run." in table
    assert gpu_check.exit_code(rows) == 0  # "not run" is not a failure
    rows.append(Row("serve", gpu_check.FAILED, "x" * 500))
    assert gpu_check.exit_code(rows) == 1
    assert "…" in gpu_check.render_table(rows)  # long cells are cut


def test_output_goes_to_OUT_when_set(gpu_check: ModuleType, tmp_path: Path) -> None:
    assert gpu_check.default_output(False, {"OUT": str(tmp_path)}) == tmp_path / "gpu_check.md"
    assert gpu_check.default_output(False, {}).name == "results.md"
    assert gpu_check.default_output(True, {}).name == "results-cpu-smoke.md"


def test_a_check_that_cannot_run_writes_a_not_run_row(gpu_check: ModuleType, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot(_ctx: object) -> list[object]:
        raise gpu_check.NotRun("no device")

    def broken(_ctx: object) -> list[object]:
        raise RuntimeError("boom")

    (tmp_path / "results").mkdir()
    for name, func in (("zero2", cannot), ("serve", broken)):
        monkeypatch.setitem(gpu_check.BY_NAME, name, gpu_check.Check(name, name, func))
        assert gpu_check.child_main(name, tmp_path, gpu_check.CPU_SMOKE) == 0
    assert json.loads((tmp_path / "results" / "zero2.json").read_text())[0]["status"] == gpu_check.NOT_RUN
    failed = json.loads((tmp_path / "results" / "serve.json").read_text())[0]
    assert failed["status"] == gpu_check.FAILED and failed["result"] == "RuntimeError: boom"


def test_finetune_yaml_is_a_valid_finetune_config(gpu_check: ModuleType, tmp_path: Path) -> None:
    from tdro_suite.train.config import FinetuneConfig

    for lora in (False, True):
        data = gpu_check.finetune_config(gpu_check.GPU, tmp_path / "model", tmp_path / "out", lora=lora)
        config = FinetuneConfig.model_validate(data)
        assert config.max_steps == gpu_check.GPU.steps and config.lora is lora


def test_optimize_yaml_uses_the_current_key_names(gpu_check: ModuleType, tmp_path: Path) -> None:
    from tdro_suite.dro.config import OptimizeConfig

    if "global_batch_size" not in OptimizeConfig.model_fields:
        pytest.skip("optimize still has its old key names (steps, batch_size, save_every)")
    data = gpu_check.optimize_config(gpu_check.GPU, tmp_path / "m", tmp_path / "ref", tmp_path / "out")
    assert {"max_steps", "global_batch_size", "save_steps"} <= set(data)
    config = OptimizeConfig.model_validate(data)
    assert config.max_steps == gpu_check.GPU.steps and config.measure == "relative"
