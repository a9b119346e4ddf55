"""Mixture comparison: fine-tune MiniLM on the bundled 13-task mixture with the uniform mixture, tDRO
reweighting, tDRO top-70% selection and the GroupDRO (`loss`) / DoReMi (`excess`) ablations, over
several seeds, and evaluate every fine-tuned model on every bundled benchmark.

Per seed, the uniform reference is trained ONCE and serves every measure that needs it; each measure's
tDRO run is done once and serves every condition that uses it. Every stage is resumable: a finished
reference/tDRO run/fine-tune/evaluation under OUT/runs/ is reused, so a killed experiment continues.

    .venv/bin/python eval/experiments/mixture_comparison.py               # 3 seeds, the bundled beir + miracl + mkqa
    .venv/bin/python eval/experiments/mixture_comparison.py --smoke       # tiny steps, 1 seed, bundled:miracl only

Outputs in OUT (default eval/experiments/results/): results.json (every run's numbers), table.md
(mean ± std over seeds per condition × benchmark) and plot.png (grouped bars with std error bars).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console
from rich.table import Table

from tdro_suite.common.io import atomic_path, atomic_write_json, atomic_write_text
from tdro_suite.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "eval" / "experiments" / "results"
SMOKE_OUT = REPO / "eval" / "experiments" / "results-smoke"
DEFAULT_OPTIMIZE_CONFIG = REPO / "configs" / "optimize" / "minilm-offline.yaml"
DEFAULT_FINETUNE_CONFIG = REPO / "configs" / "finetune" / "minilm-offline.yaml"
DEFAULT_BENCHMARKS = ("bundled:beir", "bundled:miracl", "bundled:mkqa")
SMOKE_STEPS = 2
TOP_PERCENT = 70.0
RUNS_DIR = "runs"  # git-ignored (runs/ in the repository's .gitignore): models, checkpoints, caches


@dataclass(frozen=True)
class Condition:
    """One way to build the fine-tuning mixture: which tDRO measure (None = uniform) and which transfer."""

    label: str
    measure: str | None
    top_percent: float | None
    oracle: bool = False  # uniform over every task but the spec's `oracle_drops` (the planted ones)

    @property
    def transfer(self) -> str:
        if self.oracle:
            return "oracle"
        if self.measure is None:
            return "uniform"
        return f"top-{self.top_percent:g}%" if self.top_percent is not None else "reweight"


CONDITIONS: dict[str, Condition] = {
    "uniform": Condition("uniform mixture", None, None),
    "tdro-reweight": Condition("tDRO, sample-ratio reweighting", "relative", None),
    "tdro-top70": Condition("tDRO, top-70% tasks", "relative", TOP_PERCENT),
    "loss-top70": Condition("GroupDRO measure (loss), top-70%", "loss", TOP_PERCENT),
    "excess-top70": Condition("DoReMi measure (excess), top-70%", "excess", TOP_PERCENT),
    "oracle": Condition("oracle: every task but the planted ones, uniformly", None, None, oracle=True),
}
DEFAULT_CONDITIONS = ("uniform", "tdro-reweight", "tdro-top70", "loss-top70", "excess-top70")


@dataclass
class ExperimentSpec:
    """Everything one experiment depends on; the CLI fills it with the bundled data, MiniLM and configs/."""

    out: Path = DEFAULT_OUT
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44])
    conditions: list[str] = field(default_factory=lambda: list(DEFAULT_CONDITIONS))
    benchmarks: list[str] = field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    optimize_config: Path = DEFAULT_OPTIMIZE_CONFIG
    finetune_config: Path = DEFAULT_FINETUNE_CONFIG
    data: list[str] | None = None  # None: what the configs say (the bundled mixture)
    model: str | None = None  # None: what the configs say (MiniLM)
    finetune_steps: int | None = None
    optimize_steps: int | None = None
    reference_steps: int | None = None
    eval_batch_size: int = 32
    task_schedule: str = "random"  # the fine-tunes' `task_schedule` (random | stratified)
    optimize_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. global_batch_size for more tasks
    oracle_drops: list[str] = field(default_factory=list)  # the tasks the `oracle` condition leaves out
    experiment: str = "mixture_comparison"  # results.json's name of the experiment
    title: str = "Mixture comparison"
    show_progress: bool = True

    def __post_init__(self) -> None:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise ValueError(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(CONDITIONS)}")
        if not self.seeds or not self.conditions or not self.benchmarks:
            raise ValueError("need at least one seed, one condition and one benchmark")
        if "oracle" in self.conditions and not self.oracle_drops:
            raise ValueError("the oracle condition needs the tasks it leaves out (oracle_drops)")
        self.out = Path(self.out)


@dataclass
class Record:
    """One fine-tuned model (condition × seed) evaluated on one benchmark."""

    condition: str
    seed: int
    benchmark: str
    metric: str
    value: float
    collections: dict[str, float]
    tasks: list[str]


@dataclass
class SummaryRow:
    condition: str
    benchmark: str
    metric: str
    mean: float
    std: float
    n: int


@dataclass
class ExperimentResult:
    records: list[Record]
    summary: list[SummaryRow]
    results_json: Path
    table_md: Path
    plot_png: Path
    seconds: dict[str, float]


# ---------------------------------------------------------------- configs


def _clamp_steps(cfg: Any, steps_field: str, steps: int | None) -> Any:
    """Set the step count, lowering warm-up first so the configs' own check (warm-up < steps) holds."""
    if steps is None:
        return cfg
    if cfg.warmup_steps >= steps:
        cfg.warmup_steps = max(0, steps - 1)
    setattr(cfg, steps_field, steps)
    return cfg


def _common_overrides(spec: ExperimentSpec) -> dict[str, Any]:
    return {"data": spec.data, "model": spec.model}


def optimize_config(spec: ExperimentSpec, measure: str, seed: int, run_dir: Path, reference: Path | None) -> Any:
    """The optimize config of one tDRO run: the given reference (none for `loss`), never trained in place."""
    from tdro_suite.dro.config import OptimizeConfig

    cfg = load_config(OptimizeConfig, spec.optimize_config, {
        **_common_overrides(spec), "output_dir": str(run_dir), "seed": seed, "measure": measure,
        "reference": str(reference) if reference is not None else None, "train_reference": False,
        "resume": True, "overwrite": False, **spec.optimize_overrides,
    })
    return _clamp_steps(cfg, "max_steps", spec.optimize_steps)


def reference_config(spec: ExperimentSpec, seed: int, seed_dir: Path) -> Any:
    """The reference's finetune config (the optimize config's `reference_config`, uniform), at this seed."""
    from tdro_suite.dro.config import OptimizeConfig
    from tdro_suite.dro.reference import reference_finetune_config

    opt = load_config(OptimizeConfig, spec.optimize_config, {**_common_overrides(spec), "measure": "loss"})
    ft = reference_finetune_config(opt, seed_dir)
    ft.seed = seed
    ft.progress = ft.progress and spec.show_progress
    return _clamp_steps(ft, "max_steps", spec.reference_steps)


def finetune_config(spec: ExperimentSpec, condition: Condition, seed: int, run_dir: Path, weights: Path | None) -> Any:
    from tdro_suite.train.config import FinetuneConfig

    cfg = load_config(FinetuneConfig, spec.finetune_config, {
        **_common_overrides(spec), "output_dir": str(run_dir), "seed": seed, "resume": True, "overwrite": False,
        "mixture": str(weights) if weights is not None else None,
    })
    cfg.mixture = str(weights) if weights is not None else None  # the uniform condition ignores the file's
    cfg.top_percent = condition.top_percent
    cfg.task_schedule = spec.task_schedule
    cfg.progress = cfg.progress and spec.show_progress
    return _clamp_steps(cfg, "max_steps", spec.finetune_steps)


def settings(spec: ExperimentSpec) -> dict[str, Any]:
    """What every run in OUT/runs depends on (seed, output folder and measure aside): reuse needs a match.
    Fields added since at their old default are left out, so folders made before them stay reusable."""
    from tdro_suite.runtime.config import at_old_default

    skip = {"output_dir", "seed", "measure", "reference", "train_reference", "resume", "overwrite", "progress",
            "mixture", "top_percent"}
    probe = spec.out / RUNS_DIR / "probe"
    parts = {
        "optimize": optimize_config(spec, "loss", 0, probe, None),
        "reference": reference_config(spec, 0, probe),
        "finetune": finetune_config(spec, CONDITIONS["uniform"], 0, probe, None),
    }
    return {
        name: {k: v for k, v in cfg.model_dump().items() if k not in skip | at_old_default(cfg)}
        for name, cfg in parts.items()
    }


def _check_settings(spec: ExperimentSpec, console: Console) -> dict[str, Any]:
    """Refuse to mix runs made with other steps/configs/data into one table."""
    current = json.loads(json.dumps(settings(spec)))
    saved_path = spec.out / RUNS_DIR / "settings.json"
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        if saved != current:
            changed = sorted(
                f"{part}.{key}" for part in current for key in set(current[part]) | set(saved.get(part, {}))
                if current[part].get(key) != saved.get(part, {}).get(key)
            )
            raise SystemExit(
                f"{spec.out / RUNS_DIR} holds runs made with other settings ({', '.join(changed) or 'layout'}); "
                "choose another --out or delete that folder."
            )
        console.print(f"Resuming the experiment in {spec.out} (finished runs are reused).", highlight=False)
    else:
        atomic_write_json(saved_path, current)
    return current


# ---------------------------------------------------------------- stages


class _Timings:
    """Seconds each stage took when it actually ran, kept on disk so a resumed experiment still knows them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] = round(seconds, 1)
        atomic_write_json(self.path, self.seconds)


def train_reference(spec: ExperimentSpec, seed: int, seed_dir: Path, console: Console, timings: _Timings) -> Path:
    from tdro_suite.dro.reference import REFERENCE_DIR
    from tdro_suite.train.finetune import exported_model, run_finetune

    exported = exported_model(seed_dir / REFERENCE_DIR)
    if exported is not None:
        console.print(f"[dim]seed {seed}: reusing the uniform reference {exported}[/]", highlight=False)
        return exported
    ft = reference_config(spec, seed, seed_dir)
    console.rule(f"seed {seed}: uniform reference ({ft.max_steps} steps)")
    started = time.perf_counter()
    path = run_finetune(ft, console=console).model_dir
    assert path is not None  # the reference config does not stop early
    timings.add(f"seed-{seed}/reference", time.perf_counter() - started)
    return path


def learn_weights(
    spec: ExperimentSpec, measure: str, seed: int, seed_dir: Path, reference: Path | None, console: Console,
    timings: _Timings,
) -> Path:
    from tdro_suite.dro.optimize import WEIGHTS_FILE, run_optimize

    run_dir = seed_dir / f"optimize-{measure}"
    weights = run_dir / WEIGHTS_FILE
    if weights.is_file():
        console.print(f"[dim]seed {seed}: reusing the {measure} weights {weights}[/]", highlight=False)
        return weights
    cfg = optimize_config(spec, measure, seed, run_dir, reference)
    console.rule(f"seed {seed}: tDRO weights, measure '{measure}' ({cfg.max_steps} steps)")
    started = time.perf_counter()
    run_optimize(cfg, console=console)
    timings.add(f"seed-{seed}/optimize-{measure}", time.perf_counter() - started)
    return weights


def finetune(
    spec: ExperimentSpec, name: str, seed: int, seed_dir: Path, weights: Path | None, console: Console,
    timings: _Timings,
) -> tuple[Path, list[str]]:
    """Fine-tune (or reuse) one condition's model; returns it and the tasks it trained on."""
    from tdro_suite.data.mixture import read_mixture
    from tdro_suite.train.finetune import exported_model, run_finetune

    condition = CONDITIONS[name]
    run_dir = seed_dir / f"finetune-{name}"
    exported = exported_model(run_dir)
    if exported is not None:
        console.print(f"[dim]seed {seed}: reusing the {name} model {exported}[/]", highlight=False)
    else:
        cfg = finetune_config(spec, condition, seed, run_dir, weights)
        console.rule(f"seed {seed}: fine-tune '{name}' ({condition.label}, {cfg.max_steps} steps)")
        started = time.perf_counter()
        exported = run_finetune(cfg, console=console).model_dir
        assert exported is not None  # the experiment's configs do not stop early
        timings.add(f"seed-{seed}/finetune-{name}", time.perf_counter() - started)
    kept = read_mixture(run_dir / "mixture.json")
    return exported, [n for n, w in zip(kept.names, kept.weights, strict=True) if w > 0]


def oracle_mixture(spec: ExperimentSpec) -> Path:
    """The oracle's weights file: uniform over the experiment's tasks but 0 on `oracle_drops` (which the
    fine-tune then leaves out), written to OUT/runs/ (the same bytes every time, so a resume matches)."""
    from tdro_suite.data.mixture import Mixture, write_mixture
    from tdro_suite.data.tasks import training_tasks

    tasks = training_tasks(spec.data or [])
    unknown = sorted(set(spec.oracle_drops) - {t.name for t in tasks})
    if unknown:
        raise ValueError(f"oracle_drops names task(s) the data does not have: {', '.join(unknown)}")
    names = tuple(t.name for t in tasks)
    mixture = Mixture(names, tuple(0.0 if n in spec.oracle_drops else 1.0 for n in names), tuple(t.size for t in tasks))
    path = spec.out / RUNS_DIR / "oracle-mixture.json"
    write_mixture(path, mixture)
    return path


def evaluate_model(
    spec: ExperimentSpec, name: str, seed: int, seed_dir: Path, model: Path, console: Console, timings: _Timings,
) -> dict[str, dict[str, Any]]:
    """Evaluate one model on every benchmark, reusing saved results (the encoder loads only when needed)."""
    from tdro_suite.evaluation.harness import evaluate_model

    return evaluate_model(
        model, spec.benchmarks, seed_dir / "eval" / name,
        on_start=lambda bench: console.print(f"seed {seed}: evaluating '{name}' on {bench}", highlight=False),
        on_done=lambda bench, _, seconds: timings.add(f"seed-{seed}/eval-{name}/{Path(bench).name}", seconds),
        batch_size=spec.eval_batch_size, cache_root=spec.out / RUNS_DIR / "embeddings",
        show_progress=spec.show_progress,
    )


def records_of(name: str, seed: int, tasks: list[str], results: dict[str, dict[str, Any]]) -> list[Record]:
    """One record per benchmark: the main metric averaged over its collections, plus each collection's value."""
    from tdro_suite.pipeline.run import comparison_rows

    out = []
    for bench, res in results.items():
        rows = comparison_rows({name: {bench: res}})
        collections = {row[0].split("/", 1)[1]: row[2][name] for row in rows if not row[0].endswith("/average")}
        metric = res["main_metric"]
        out.append(Record(name, seed, Path(bench).name, metric, float(res["average"][metric]), collections, tasks))
    return out


# ---------------------------------------------------------------- aggregation and outputs


def summarize(records: Sequence[Record], conditions: Sequence[str], benchmarks: Sequence[str]) -> list[SummaryRow]:
    """Mean and sample std (0 with a single seed) over seeds, per condition × benchmark."""
    rows = []
    for name in conditions:
        for bench in benchmarks:
            picked = [r for r in records if r.condition == name and r.benchmark == Path(bench).name]
            if not picked:
                continue
            values = [r.value for r in picked]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(SummaryRow(name, picked[0].benchmark, picked[0].metric, statistics.fmean(values), std,
                                   len(values)))
    return rows


def mean_std(row: SummaryRow) -> str:
    """x100, two decimals: "42.10 ± 0.35"."""
    return f"{100 * row.mean:.2f} ± {100 * row.std:.2f}"


def task_counts(records: Sequence[Record], name: str) -> str:
    counts = sorted({len(r.tasks) for r in records if r.condition == name})
    return "/".join(str(c) for c in counts) or "-"


_METRIC_NAMES = {"ndcg@10": "nDCG@10", "recall@100": "Recall@100"}


def _columns(summary: Sequence[SummaryRow]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for row in summary:
        seen.setdefault(row.benchmark, row.metric)
    return list(seen.items())


def markdown_table(records: Sequence[Record], summary: Sequence[SummaryRow], conditions: Sequence[str]) -> str:
    columns = _columns(summary)
    by_key = {(r.condition, r.benchmark): r for r in summary}
    seeds = sorted({r.seed for r in records})
    head = ["condition", "tasks", *(f"{b} {_METRIC_NAMES.get(m, m)}" for b, m in columns)]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(columns)]
    for name in conditions:
        cells = [by_key[(name, b)] for b, _ in columns if (name, b) in by_key]
        if not cells:
            continue
        values = [mean_std(by_key[(name, b)]) if (name, b) in by_key else "-" for b, _ in columns]
        label = f"{name}: {CONDITIONS[name].label}"
        lines.append(f"| {label} | {task_counts(records, name)} | " + " | ".join(values) + " |")
    note = (
        f"\nMean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}; std 0 with one seed), "
        "x100; each benchmark's main metric averaged over its collections. `tasks`: how many of the tasks the "
        "condition fine-tuned on.\n"
    )
    return "\n".join(lines) + "\n" + note


def paired_differences(records: Sequence[Record], conditions: Sequence[str], baseline: str = "uniform") -> str:
    """Markdown: per condition × benchmark, the mean ± sample std over seeds of (condition − baseline),
    and in how many seeds the condition scored higher. Pairing by seed removes the seed-to-seed swing
    that both runs share (the same reference, the same task draw order), which the std columns keep."""
    value = {(r.condition, r.seed, r.benchmark): r.value for r in records}
    seeds = sorted({r.seed for r in records})
    benchmarks = list(dict.fromkeys(r.benchmark for r in records))
    lines = ["| condition − " + baseline + " | " + " | ".join(benchmarks) + " |", "|---|" + "---:|" * len(benchmarks)]
    for name in conditions:
        if name == baseline:
            continue
        cells = []
        for bench in benchmarks:
            diffs = [100 * (value[(name, seed, bench)] - value[(baseline, seed, bench)])
                     for seed in seeds if (name, seed, bench) in value and (baseline, seed, bench) in value]
            if not diffs:
                cells.append("-")
                continue
            std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            wins = sum(d > 0 for d in diffs)
            mean = round(statistics.fmean(diffs), 2) + 0.0  # + 0.0: no "-0.00"
            cells.append(f"{mean:+.2f} ± {std:.2f} ({wins}/{len(diffs)} higher)")
        if any(c != "-" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def dropped_tasks(records: Sequence[Record], conditions: Sequence[str], planted: Sequence[str] = ()) -> str:
    """Markdown: which tasks each selection (top-p%, oracle) left out, per seed (how stable it is); with
    `planted`, those are bold and each cell ends with how many of them it dropped."""
    everything = sorted({t for r in records for t in r.tasks} | set(planted))
    seeds = sorted({r.seed for r in records})
    lines = ["| condition | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]

    def cell(kept: list[str]) -> str:
        dropped = [t for t in everything if t not in kept]
        text = ", ".join(f"**{t}**" if t in planted else t for t in dropped)
        return text + (f" ({sum(t in planted for t in dropped)}/{len(planted)} planted)" if planted else "")

    for name in conditions:
        if CONDITIONS[name].top_percent is None and not CONDITIONS[name].oracle:
            continue
        tasks = {r.seed: r.tasks for r in records if r.condition == name}
        if tasks:
            lines.append(f"| {name} | " + " | ".join(cell(tasks[s]) if s in tasks else "-" for s in seeds) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def rich_table(
    records: Sequence[Record], summary: Sequence[SummaryRow], conditions: Sequence[str],
    title: str = "Mixture comparison",
) -> Table:
    columns = _columns(summary)
    by_key = {(r.condition, r.benchmark): r for r in summary}
    table = Table(title=f"{title} (x100, mean ± std over seeds)")
    table.add_column("condition")
    table.add_column("tasks", justify="right")
    for bench, metric in columns:
        table.add_column(f"{bench} {_METRIC_NAMES.get(metric, metric)}", justify="right")
    for name in conditions:
        if any((name, b) in by_key for b, _ in columns):
            table.add_row(name, task_counts(records, name),
                          *(mean_std(by_key[(name, b)]) if (name, b) in by_key else "-" for b, _ in columns))
    return table


def plot(summary: Sequence[SummaryRow], conditions: Sequence[str], path: Path) -> None:
    """Grouped bars: one group per benchmark, one bar per condition, sample-std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = _columns(summary)
    by_key = {(r.condition, r.benchmark): r for r in summary}
    present = [c for c in conditions if any((c, b) in by_key for b, _ in columns)]
    width = 0.8 / max(1, len(present))
    fig, ax = plt.subplots(figsize=(4.0 + 0.35 * len(columns) * max(1, len(present)), 4.2))
    for i, name in enumerate(present):
        xs, means, stds = [], [], []
        for j, (bench, _) in enumerate(columns):
            row = by_key.get((name, bench))
            if row is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                means.append(100 * row.mean)
                stds.append(100 * row.std)
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(range(len(columns)), [f"{b}\n{_METRIC_NAMES.get(m, m)}" for b, m in columns])
    ax.set_ylabel("score x100 (mean ± std over seeds)")
    ax.set_title("Fine-tuning mixtures compared")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_outputs(
    spec: ExperimentSpec, records: list[Record], settings_used: dict[str, Any], seconds: dict[str, float],
    *, final: bool,
) -> tuple[list[SummaryRow], Path, Path, Path]:
    """results.json after every evaluation (so a killed run still shows its numbers); table and plot at the end."""
    summary = summarize(records, spec.conditions, spec.benchmarks)
    results_json, table_md, plot_png = spec.out / "results.json", spec.out / "table.md", spec.out / "plot.png"
    tasks_by_condition = {name: task_counts(records, name) for name in spec.conditions}
    atomic_write_json(results_json, {
        "experiment": spec.experiment,
        "complete": final,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seeds": spec.seeds,
        "benchmarks": [Path(b).name for b in spec.benchmarks],
        "conditions": {
            name: {"label": c.label, "measure": c.measure, "transfer": c.transfer, "tasks": tasks_by_condition[name]}
            for name, c in CONDITIONS.items() if name in spec.conditions
        },
        "settings": settings_used,
        "summary": [vars(r) for r in summary],
        "runs": [vars(r) for r in records],
        "seconds": seconds,
        "seconds_total": round(sum(seconds.values()), 1),
    })
    if final:
        sections = [f"# {spec.title}\n\n" + markdown_table(records, summary, spec.conditions)]
        if paired := paired_differences(records, spec.conditions):
            sections.append("## Difference to the uniform mixture, paired by seed (x100)\n\n" + paired)
        if dropped := dropped_tasks(records, spec.conditions, spec.oracle_drops):
            which = f"selection (top-{TOP_PERCENT:g}%, oracle)" if "oracle" in spec.conditions else \
                f"top-{TOP_PERCENT:g}% selection"
            sections.append(f"## Tasks each {which} left out\n\n" + dropped)
        atomic_write_text(table_md, "\n".join(sections))
        plot(summary, spec.conditions, plot_png)
    return summary, results_json, table_md, plot_png


def run_experiment(spec: ExperimentSpec, *, console: Console | None = None) -> ExperimentResult:
    """Train, reuse and evaluate every (seed, condition), then write results.json, table.md and plot.png."""
    console = console or Console()
    runs = spec.out / RUNS_DIR
    settings_used = _check_settings(spec, console)
    timings = _Timings(runs / "timings.json")
    measures = [m for m in ("relative", "loss", "excess") if any(CONDITIONS[c].measure == m for c in spec.conditions)]
    oracle = oracle_mixture(spec) if "oracle" in spec.conditions else None
    records: list[Record] = []
    for seed in spec.seeds:
        seed_dir = runs / f"seed-{seed}"
        reference = None
        if any(m != "loss" for m in measures):
            reference = train_reference(spec, seed, seed_dir, console, timings)
        weights = {
            m: learn_weights(spec, m, seed, seed_dir, None if m == "loss" else reference, console, timings)
            for m in measures
        }
        for name in spec.conditions:
            measure = CONDITIONS[name].measure
            mixture = weights.get(measure) if measure else oracle if CONDITIONS[name].oracle else None
            model, tasks = finetune(spec, name, seed, seed_dir, mixture, console, timings)
            results = evaluate_model(spec, name, seed, seed_dir, model, console, timings)
            new = records_of(name, seed, tasks, results)
            records.extend(new)
            console.print(
                f"seed {seed} · {name} ({len(tasks)} tasks): "
                + ", ".join(f"{r.benchmark} {_METRIC_NAMES.get(r.metric, r.metric)} {100 * r.value:.2f}" for r in new),
                highlight=False,
            )
            write_outputs(spec, records, settings_used, timings.seconds, final=False)
    summary, results_json, table_md, plot_png = write_outputs(
        spec, records, settings_used, timings.seconds, final=True
    )
    return ExperimentResult(records, summary, results_json, table_md, plot_png, dict(timings.seconds))


# ---------------------------------------------------------------- CLI


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(
    argv: Sequence[str] | None = None, *, description: str | None = None, out: Path = DEFAULT_OUT,
    smoke_out: Path = SMOKE_OUT, conditions: Sequence[str] = DEFAULT_CONDITIONS, **extra: Any,
) -> ExperimentSpec:
    """The command line of this experiment, or (with other defaults and `extra` spec fields) of another
    one built on it (noisy_mixture.py)."""
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds, 42, 43, ... (default 3; smoke 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {out.relative_to(REPO)}; smoke: {smoke_out.relative_to(REPO)})")
    parser.add_argument("--finetune-steps", type=int, default=None, help="override the finetune config's max_steps")
    parser.add_argument("--optimize-steps", type=int, default=None, help="override the optimize config's max_steps")
    parser.add_argument("--reference-steps", type=int, default=None, help="override the reference config's max_steps")
    parser.add_argument("--benchmarks", type=_list, default=None,
                        help="comma list: bundled:beir,bundled:miracl,bundled:mkqa, public names or benchmark folders "
                             "(default the three bundled; smoke bundled:miracl)")
    parser.add_argument("--conditions", type=_list, default=None,
                        help=f"comma list out of {','.join(conditions)} (default all)")
    parser.add_argument("--optimize-config", type=Path, default=DEFAULT_OPTIMIZE_CONFIG)
    parser.add_argument("--finetune-config", type=Path, default=DEFAULT_FINETUNE_CONFIG)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--task-schedule", choices=("random", "stratified"), default="random",
                        help="the fine-tunes' task schedule (finetune --task-schedule); default random")
    parser.add_argument("--smoke", action="store_true",
                        help=f"CI-sized preset: {SMOKE_STEPS} steps per stage, 1 seed, miracl only")
    args = parser.parse_args(argv)
    smoke_steps = SMOKE_STEPS if args.smoke else None
    seeds = args.seeds if args.seeds is not None else (1 if args.smoke else 3)
    if seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        return ExperimentSpec(
            out=args.out or (smoke_out if args.smoke else out),
            seeds=[42 + i for i in range(seeds)],
            conditions=args.conditions or list(conditions),
            benchmarks=args.benchmarks or (["bundled:miracl"] if args.smoke else list(DEFAULT_BENCHMARKS)),
            optimize_config=args.optimize_config,
            finetune_config=args.finetune_config,
            finetune_steps=args.finetune_steps or smoke_steps,
            optimize_steps=args.optimize_steps or smoke_steps,
            reference_steps=args.reference_steps or smoke_steps,
            eval_batch_size=args.eval_batch_size,
            task_schedule=args.task_schedule,
            **extra,
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(parse_args(argv))


def run_and_report(spec: ExperimentSpec) -> int:
    """Run the experiment, print its table and where the outputs are; non-zero when a value is not finite."""
    console = Console()
    started = time.perf_counter()
    result = run_experiment(spec, console=console)
    console.rule(spec.title)
    console.print(rich_table(result.records, result.summary, spec.conditions, spec.title))
    minutes = (time.perf_counter() - started) / 60
    console.print(
        f"results: {result.results_json}\ntable:   {result.table_md}\nplot:    {result.plot_png}\n"
        f"this invocation: {minutes:.1f} min wall; stages run so far: {sum(result.seconds.values()) / 60:.1f} min",
        highlight=False,
    )
    return 0 if all(math.isfinite(r.value) for r in result.records) else 1


if __name__ == "__main__":
    sys.exit(main())
