"""tDRO's point, on planted tasks: the relative measure down-weights noise and trivia, GroupDRO chases noise.

Four synthetic tasks on a tiny encoder (tests/dist_scripts/dro_synthetic.py): two learnable word-pairing
tasks, `noisy` (positives drawn at random: unlearnable) and `easy` (the positive is the query itself).
The reference is the same tiny encoder trained on the uniform mixture (the tDRO loop with η = 0,
i.e. plain uniform training on hard negatives). Then, from the untrained base model:

- `relative`: noise keeps proxy ≈ reference ≈ log 8, a ratio near 1; the learnable tasks, which the
  reference solved and the proxy has not, get ratios ~20× larger. The easy task's reference loss is
  ~0.003, while the proxy learns it within a few steps. Under the reference rule (the default) most of
  its shares are above the 1e-4 threshold, so it starts with large ratios that shrink as the proxy
  learns it; under the floor rule its shares are floored at 0.1/N, which caps its values at ℓᵖ·N/0.1.
  Noisy and easy end lowest under both.
- `loss` (GroupDRO): the noisy task keeps the largest proxy loss, so it gets the largest weight.

Numbers seen (CPU, seed 7; seeds 1 and 3 give the same orders): relative, reference rule → map-b 0.379,
map-a 0.358, easy 0.197, noisy 0.066 (easy 0.217 and 0.254 with seeds 1 and 3); floor rule → map-a 0.466,
map-b 0.389, easy 0.083, noisy 0.062; loss → noisy 0.375, map-a 0.286, map-b 0.263, easy 0.076 (uniform = 0.25).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent / "dist_scripts"))

from dro_synthetic import build_planted_tasks

from tdro_suite.data.mixture import read_mixture
from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.optimize import run_optimize

QUIET = Console(quiet=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("dro-behaviour")
    manifest = build_planted_tasks(root / "data", tiny_encoder_dir)
    common = dict(
        data=[str(manifest)],
        model=str(tiny_encoder_dir),
        use_instructions=False,
        global_batch_size=32,
        hard_negatives=7,
        temperature=0.05,
        max_grad_norm=None,
        seed=7,
    )
    reference = run_optimize(
        OptimizeConfig(
            **common, measure="loss", step_size=0.0, max_steps=40, learning_rate=5e-3,
            output_dir=str(root / "reference"), save_proxy=True,
        ),
        console=QUIET,
    ).run_dir
    return {"root": root, "common": common, "reference": str(reference / "proxy")}


def _final_weights(planted: dict, measure: str, **extra: object) -> dict[str, float]:
    if measure != "loss":
        extra["reference"] = planted["reference"]
    label = f"{measure}-{extra['relative_small_share']}" if "relative_small_share" in extra else measure
    run = run_optimize(
        OptimizeConfig(
            **planted["common"], **extra, measure=measure, step_size=0.1, max_steps=30, learning_rate=1e-3,
            output_dir=str(planted["root"] / label),
        ),
        console=QUIET,
    ).run_dir
    weights = read_mixture(run / "weights.json").as_dict()
    print(label, {k: round(v, 3) for k, v in sorted(weights.items(), key=lambda kv: -kv[1])})
    return weights


def test_relative_measure_puts_noise_and_trivia_last(planted: dict) -> None:
    w = _final_weights(planted, "relative")  # the reference rule
    ranked = sorted(w, key=w.get)
    assert set(ranked[:2]) == {"noisy", "easy"}
    assert w["noisy"] < 0.5 * min(w["map-a"], w["map-b"])


def test_relative_measure_floor_rule_puts_noise_and_trivia_far_last(planted: dict) -> None:
    w = _final_weights(planted, "relative", relative_small_share="floor")
    ranked = sorted(w, key=w.get)
    assert set(ranked[:2]) == {"noisy", "easy"}
    assert max(w["noisy"], w["easy"]) < 0.5 * min(w["map-a"], w["map-b"])


def test_groupdro_loss_measure_puts_the_most_weight_on_noise(planted: dict) -> None:
    w = _final_weights(planted, "loss")
    assert max(w, key=w.get) == "noisy"
    assert w["easy"] == min(w.values())
