"""Noisy mixture (issue 18, "tDRO as a data cleaner"): does tDRO drop planted broken tasks, and does it pay?

The data is the bundled 13 tasks plus three planted broken ones (planted_tasks.py).

Conditions, over seeds 42, 43, 44 by default: `uniform` over all 16 tasks, tDRO reweighting and top-70%
(`relative` measure), the `loss` and `excess` measures' top-70%, and an `oracle` that fine-tunes on exactly
the 13 real tasks. Everything else (configs, stages, reuse, outputs) is mixture_comparison.py's: this file
only supplies the data, the conditions and the tDRO batch (one example of each of the 16 tasks per step).

    .venv/bin/python eval/experiments/noisy_mixture.py             # 3 seeds, the bundled beir + miracl + mkqa
    .venv/bin/python eval/experiments/noisy_mixture.py --smoke     # tiny steps, 1 seed, bundled:miracl only

Outputs in OUT (default eval/experiments/results-noisy/): results.json, table.md (mean ± std, differences
to uniform paired by seed, which tasks each selection dropped per seed with the planted ones in bold) and
plot.png. The planted data is written to OUT/runs/data (the same bytes on every run, so a killed
experiment resumes).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mixture_comparison as mc
from planted_tasks import planted_names, write_noisy_mixture

NOISY_OUT = mc.REPO / "eval" / "experiments" / "results-noisy"
NOISY_SMOKE_OUT = mc.REPO / "eval" / "experiments" / "results-noisy-smoke"
CONDITIONS = ("uniform", "tdro-reweight", "tdro-top70", "loss-top70", "excess-top70", "oracle")
PLANTED_SEED = 0  # the planted data is the same for every training seed


def task_count() -> int:
    """The bundled tasks plus the planted ones: tDRO's global batch, one example of each per step."""
    from tdro_suite.bundled import train_dir
    from tdro_suite.data.tasks import load_tasks

    return len(load_tasks([train_dir()])) + len(planted_names())


def parse_args(argv: Sequence[str] | None = None) -> mc.ExperimentSpec:
    """mixture_comparison's options with this experiment's outputs, conditions and tDRO batch."""
    return mc.parse_args(
        argv, description=__doc__.splitlines()[0], out=NOISY_OUT, smoke_out=NOISY_SMOKE_OUT, conditions=CONDITIONS,
        oracle_drops=planted_names(), optimize_overrides={"global_batch_size": task_count()},
        experiment="noisy_mixture", title="Noisy mixture",
    )


def with_planted_data(spec: mc.ExperimentSpec) -> mc.ExperimentSpec:
    """Write the 16-task data folder under OUT/runs/data and point every stage at its manifest."""
    spec.data = [str(write_noisy_mixture(spec.out / mc.RUNS_DIR / "data", seed=PLANTED_SEED))]
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    return mc.run_and_report(with_planted_data(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
