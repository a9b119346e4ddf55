"""The optimize loop on a tiny encoder: outputs, exact resume, accumulation invariance, user errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent / "dist_scripts"))

from dro_synthetic import build_planted_tasks, without_dropout

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.config import load_config
from tdro_suite.data.mixture import read_mixture
from tdro_suite.dro import optimize as optimize_module
from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.optimize import run_optimize
from tdro_suite.dro.outputs import read_trajectory
from tdro_suite.runtime.run_dir import CheckpointError

QUIET = Console(quiet=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("dro-optimize")
    model = without_dropout(tiny_encoder_dir, root / "encoder")
    manifest = build_planted_tasks(root / "data", model)
    return {"model": str(model), "data": [str(manifest)], "root": root}


def _cfg(setup: dict, out: Path, **kw) -> OptimizeConfig:
    values = dict(
        data=setup["data"],
        model=setup["model"],
        reference=setup["model"],
        use_instructions=False,
        global_batch_size=16,
        hard_negatives=3,
        temperature=0.05,
        learning_rate=1e-3,
        step_size=0.5,
        max_steps=4,
        output_dir=str(out),
        seed=7,
    )
    values.update(kw)
    return OptimizeConfig(**values)


def _weights(run: Path, kind: str = "") -> list[float]:
    return list(read_mixture(run / (f"weights_{kind}.json" if kind else "weights.json")).weights)


def test_run_folder_holds_every_output(setup: dict, tmp_path: Path) -> None:
    run = run_optimize(_cfg(setup, tmp_path / "run", weights_output="ema"), console=QUIET).run_dir
    main = json.loads((run / "weights.json").read_text())
    assert main["weights_kind"] == "ema" and main["measure"] == "relative" and main["steps"] == 4
    assert main["domain_ids"] == {"map-a": 0, "map-b": 1, "noisy": 2, "easy": 3}  # the reference's layout
    names = list(main["domain_ids"])
    assert _weights(run) == _weights(run, "ema")
    assert sum(_weights(run)) == pytest.approx(1.0)
    rows = read_trajectory(run / "trajectory.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [rows[-1][f"weight/{n}"] for n in names] == pytest.approx(_weights(run, "final"))
    mean = [sum(r[f"weight/{n}"] for r in rows) / 4 for n in names]
    assert _weights(run, "mean") == pytest.approx(mean)
    assert (run / "weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = read_mixture(run / "selections" / "top-50.json")  # ⌊4·50/100⌋ = 2 largest-EMA tasks, uniform
    order = sorted(names, key=lambda n: -_weights(run)[names.index(n)])
    assert set(top.names) == set(order[:2]) and top.weights == (0.5, 0.5)
    assert len(list((run / "selections").glob("top-*.json"))) == 9


def test_interrupted_run_resumes_exactly(setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = run_optimize(_cfg(setup, tmp_path / "straight", max_steps=5, save_steps=2), console=QUIET).run_dir

    real_step = optimize_module.tdro_step
    calls = {"n": 0}

    def crash_on_fourth(**kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_step(**kw)

    monkeypatch.setattr(optimize_module, "tdro_step", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_optimize(_cfg(setup, tmp_path / "resumed", max_steps=5, save_steps=2), console=QUIET)
    assert not (tmp_path / "resumed" / "weights.json").exists()
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step-000002"]
    monkeypatch.setattr(optimize_module, "tdro_step", real_step)
    resumed = run_optimize(
        _cfg(setup, tmp_path / "resumed", max_steps=5, save_steps=2, resume=True), console=QUIET
    ).run_dir
    assert read_trajectory(resumed / "trajectory.csv") == read_trajectory(straight / "trajectory.csv")
    for kind in ("final", "mean", "ema"):
        assert _weights(resumed, kind) == _weights(straight, kind)


def test_gradient_accumulation_gives_the_same_weights(setup: dict, tmp_path: Path) -> None:
    one = run_optimize(_cfg(setup, tmp_path / "one", max_steps=3), console=QUIET).run_dir
    four = run_optimize(_cfg(setup, tmp_path / "four", max_steps=3, grad_accumulation=4), console=QUIET).run_dir
    a, b = read_trajectory(one / "trajectory.csv"), read_trajectory(four / "trajectory.csv")
    for ra, rb in zip(a, b, strict=True):
        for key, value in ra.items():
            assert rb[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # the weights did move: the check above is not comparing two uniform vectors
    assert max(_weights(one)) > 0.26


def test_accumulation_replays_dropout_masks(setup: dict, tiny_encoder_dir: Path, monkeypatch) -> None:
    """With dropout on, pass 2 (with gradient) must see pass 1's masks, or weights and gradients disagree."""
    from tdro_suite.dro import step as step_module
    from tdro_suite.dro.batches import draw_global_batch, load_task_data, local_micro_batches
    from tdro_suite.dro.group_weights import GroupWeights
    from tdro_suite.dro.optimize import resolve_tasks
    from tdro_suite.modeling.encoder import Encoder
    from tdro_suite.runtime.module import EncoderModule

    cfg = _cfg(setup, Path("unused"))
    tasks = load_task_data(resolve_tasks(cfg), use_instructions=False)
    items = draw_global_batch(tasks, 0, batch_size=8, hard_negatives=3, seed=1)
    micro = local_micro_batches(items, rank=0, world_size=1, accumulation=2)
    proxy = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")  # dropout 0.1
    proxy.train()
    calls: list[torch.Tensor] = []
    real = step_module.hard_negative_infonce

    def record(q, p, temperature):
        out = real(q, p, temperature)
        calls.append(out.detach().clone())
        return out

    monkeypatch.setattr(step_module, "hard_negative_infonce", record)
    step_module.tdro_step(
        model=EncoderModule(proxy), proxy=proxy, reference=None, micro_batches=micro,
        group_weights=GroupWeights(4), measure="loss", lengths=step_module.Lengths(16, 16),
        temperature=0.05,
    )
    pass1_m0, pass1_m1, pass2_m0, pass2_m1 = calls
    assert torch.equal(pass2_m0, pass1_m0) and torch.equal(pass2_m1, pass1_m1)
    again = step_module.per_example_losses(proxy, proxy, micro[0], step_module.Lengths(16, 16), 0.05)
    assert not torch.allclose(again.detach(), pass1_m0)  # dropout is really on: without the replay they differ


def test_bf16_autocast_forward_matches_fp32(setup: dict) -> None:
    """The GPU precision path (bf16 autocast over fp32 weights), exercised with CPU autocast."""
    from tdro_suite.dro import step as step_module
    from tdro_suite.dro.batches import draw_global_batch, load_task_data
    from tdro_suite.dro.optimize import resolve_tasks
    from tdro_suite.modeling.encoder import Encoder

    tasks = load_task_data(resolve_tasks(_cfg(setup, Path("unused"))), use_instructions=False)
    items = draw_global_batch(tasks, 0, batch_size=8, hard_negatives=3, seed=1)
    encoder = Encoder.from_pretrained(setup["model"], device="cpu", dtype=torch.float32)
    lengths = step_module.Lengths(16, 16)
    fp32 = step_module.reference_losses(encoder, items, lengths, 0.05)
    bf16 = step_module.reference_losses(encoder, items, lengths, 0.05, bf16=True)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0.05)
    assert not torch.equal(bf16, fp32)  # autocast really ran in bf16
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        run_optimize(_cfg(setup, Path("unused"), precision="bf16"), console=QUIET)


def test_reference_runs_in_the_proxys_precision(setup: dict) -> None:
    """Under bf16 the frozen reference keeps fp32 weights under autocast, as the proxy does (and the public code):
    at equal weights the two give identical losses, where bf16 reference weights would not."""
    from tdro_suite.dro import step as step_module
    from tdro_suite.dro.batches import draw_global_batch, load_task_data
    from tdro_suite.dro.optimize import resolve_tasks
    from tdro_suite.modeling.encoder import Encoder
    from tdro_suite.runtime.build import build_trainable_encoder, load_frozen_encoder

    cfg = _cfg(setup, Path("unused"), temperature=0.002)
    items = draw_global_batch(load_task_data(resolve_tasks(cfg), use_instructions=False), 0, batch_size=8,
                              hard_negatives=3, seed=1)
    lengths = step_module.Lengths(16, 16)
    reference = load_frozen_encoder(setup["model"], torch.device("cpu"))
    assert {p.dtype for p in reference.parameters()} == {torch.float32}
    proxy = build_trainable_encoder(cfg, torch.device("cpu"), bf16=True)
    proxy.eval()
    with torch.no_grad():
        as_proxy = step_module.per_example_losses(proxy, proxy, items, lengths, 0.002, bf16=True)
    as_reference = step_module.reference_losses(reference, items, lengths, 0.002, bf16=True)
    assert torch.equal(as_reference, as_proxy)
    bf16_weights = Encoder.from_pretrained(setup["model"], device="cpu", dtype=torch.bfloat16).eval()
    assert not torch.equal(step_module.reference_losses(bf16_weights, items, lengths, 0.002, bf16=True), as_proxy)


def test_initial_weights_start_the_weights_and_set_the_sampling_rates(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the public tDRO code, the initial weights file is both the first α and the tasks' sampling rates."""
    from collections import Counter

    mixture = tmp_path / "init.json"
    mixture.write_text(json.dumps({"domain_ids": ["map-a", "map-b", "noisy", "easy"], "domain_weights": [4, 2, 1, 1]}))
    real_draw = optimize_module.draw_global_batch
    drawn: list[Counter] = []

    def record(*args, **kw):
        items = real_draw(*args, **kw)
        drawn.append(Counter(it.task_id for it in items))
        return items

    monkeypatch.setattr(optimize_module, "draw_global_batch", record)
    run = run_optimize(
        _cfg(setup, tmp_path / "run", initial_weights=str(mixture), step_size=0.0, max_steps=2), console=QUIET
    ).run_dir
    assert drawn == [Counter({0: 8, 1: 4, 2: 2, 3: 2})] * 2  # 16 examples at rates 1/2, 1/4, 1/8, 1/8
    assert _weights(run) == pytest.approx([0.5, 0.25, 0.125, 0.125])  # η = 0: α stays where it started


def test_existing_run_needs_resume_or_overwrite(setup: dict, tmp_path: Path) -> None:
    run_optimize(_cfg(setup, tmp_path / "run", max_steps=2), console=QUIET)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_optimize(_cfg(setup, tmp_path / "run", max_steps=2), console=QUIET)
    with pytest.raises(CheckpointError, match=r"'step_size' was 0.5, now 0.25"):
        run_optimize(_cfg(setup, tmp_path / "run", max_steps=2, step_size=0.25, resume=True), console=QUIET)
    # overwrite starts over (not a resume, so other settings are fine): a fresh 3-step trajectory
    fresh = _cfg(setup, tmp_path / "run", max_steps=3, step_size=0.25, overwrite=True)
    run = run_optimize(fresh, console=QUIET).run_dir
    assert [r["step"] for r in read_trajectory(run / "trajectory.csv")] == [1, 2, 3]


def test_user_errors_are_clear(setup: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a reference model"):
        load_config(OptimizeConfig, None, {"measure": "relative"})
    with pytest.raises(ConfigError, match="not divisible"):
        load_config(OptimizeConfig, None, {"measure": "loss", "global_batch_size": 10, "grad_accumulation": 4})
    with pytest.raises(ConfigError, match=r"unknown key 'steps' \(renamed to 'max_steps'\)"):
        load_config(OptimizeConfig, None, {"measure": "loss", "steps": 3})
    with pytest.raises(ConfigError, match="unknown key 'eta'"):
        load_config(OptimizeConfig, None, {"measure": "loss", "eta": 0.1})
    bad = tmp_path / "bad"
    shutil.copytree(Path(setup["data"][0]).parent, bad)
    line = json.loads((bad / "easy.jsonl").read_text().splitlines()[0])
    line["negative_passages"] = []
    (bad / "easy.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError, match="no hard negatives"):
        run_optimize(_cfg(setup, tmp_path / "x", data=[str(bad / "tasks.json")]), console=QUIET)
    mixture = tmp_path / "init.json"
    mixture.write_text(json.dumps({"domain_ids": ["map-a", "map-b"], "domain_weights": [1, 1]}))
    with pytest.raises(DataError, match="missing or zero: noisy, easy"):
        run_optimize(_cfg(setup, tmp_path / "y", initial_weights=str(mixture)), console=QUIET)
