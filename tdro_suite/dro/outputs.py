"""What `optimize` leaves in its run folder, every file written atomically.

- `weights.json` (the main result, the kind chosen by `weights_output`), `weights_final.json`,
  `weights_mean.json`, `weights_ema.json`: mixture files `finetune --mixture` reads.
- `selections/top-10.json` … `top-90.json`: the paper's top-p% transfer (kept tasks, uniform).
- `trajectory.csv`: one row per step with the weights, the group measures and the mean losses per task.
- `weights.png`: the weight and measure trajectories.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from tdro_suite.common.io import atomic_path
from tdro_suite.data.mixture import Mixture, write_mixture

TOP_PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def trajectory_columns(names: Sequence[str]) -> list[str]:
    columns = ["step", "lr", "proxy_loss", "reference_loss", "weighted_loss"]
    for prefix in ("weight", "measure", "proxy_loss", "reference_loss"):
        columns += [f"{prefix}/{n}" for n in names]
    return columns


def write_trajectory(path: Path, rows: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """One CSV row per optimizer step; columns `weight/<task>`, `measure/<task>`, ... (see `trajectory_columns`)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=trajectory_columns(names), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_trajectory(path: Path) -> list[dict[str, float]]:
    """The CSV back as floats (empty cells → NaN), for plots and tests."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_trajectory(path: Path, rows: Sequence[dict[str, Any]], names: Sequence[str], measure: str) -> None:
    """Two panels sharing the step axis: task weights α_k and the (unclipped) group measures g_k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for i, name in enumerate(names):
        color = cmap(i % cmap.N)
        top.plot(steps, [r[f"weight/{name}"] for r in rows], label=name, color=color)
        bottom.plot(steps, [r[f"measure/{name}"] for r in rows], color=color)
    if names:
        top.axhline(1 / len(names), color="grey", linestyle=":", linewidth=1, label="uniform")
    top.set_ylabel("task weight α")
    top.set_title(f"tDRO task weights ({measure} measure)")
    bottom.set_ylabel(f"group measure g ({measure})")
    bottom.set_xlabel("optimizer step")
    top.legend(fontsize="small", ncol=max(1, math.ceil(len(names) / 12)), loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_weight_files(
    run_dir: Path, mixtures: dict[str, Mixture], main: str, **extra: Any
) -> Path:
    """`weights_<kind>.json` for each kind plus `weights.json` (= the `main` kind); returns weights.json."""
    for kind, mixture in mixtures.items():
        write_mixture(run_dir / f"weights_{kind}.json", mixture, method="tdro", weights_kind=kind, **extra)
    main_path = run_dir / "weights.json"
    write_mixture(main_path, mixtures[main], method="tdro", weights_kind=main, **extra)
    return main_path


def write_selections(run_dir: Path, mixture: Mixture, **extra: Any) -> list[Path]:
    """`selections/top-<p>.json` for p = 10…90: the ⌊K·p/100⌋ largest-weight tasks, sampled uniformly."""
    paths = []
    for percent in TOP_PERCENTS:
        path = run_dir / "selections" / f"top-{percent}.json"
        write_mixture(path, mixture.top_percent(percent), method="tdro-top-percent", top_percent=percent, **extra)
        paths.append(path)
    return paths


def weights_table(mixtures: dict[str, Mixture], main: str, measure: str) -> Table:
    """Tasks sorted by the main weights, with the other kinds and the uniform weight for comparison."""
    primary = mixtures[main]
    order = sorted(range(len(primary.names)), key=lambda i: (-primary.weights[i], i))
    uniform = 1 / len(primary.names)
    table = Table(title=f"tDRO task weights ({measure} measure; sorted by {main}; uniform = {uniform:.4f})")
    table.add_column("#", justify="right")
    table.add_column("task")
    for kind in mixtures:
        table.add_column(kind + (" *" if kind == main else ""), justify="right")
    table.add_column("× uniform", justify="right")
    table.add_column("size", justify="right")
    for rank, i in enumerate(order, start=1):
        name = primary.names[i]
        table.add_row(
            str(rank),
            name,
            *(f"{m.weight_of(name):.4f}" for m in mixtures.values()),
            f"{primary.weights[i] / uniform:.2f}",
            str(primary.sizes[i]),
        )
    return table
