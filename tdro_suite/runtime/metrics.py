"""Training metrics as JSON lines (one object per logged step) and the loss-curve picture drawn from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tdro_suite.common.io import atomic_path, atomic_write_text
from tdro_suite.common.jsonl import InvalidLineError, json_lines


class MetricsLogger:
    """Append one JSON object per step to `path`, flushed at once so a crash loses at most one line.

    On resume from step S, lines of steps > S (written after that checkpoint by the interrupted run)
    are dropped first, so the log reads exactly as an uninterrupted run's.
    """

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            atomic_write_text(self.path, "")
        else:
            kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = self.path.open("a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [obj for _, obj in json_lines(path, keep_bad_lines=True) if not isinstance(obj, InvalidLineError)]


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "fine-tuning loss") -> Path:
    """Loss (and its moving average) and the learning rate per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(metrics_path) if "loss" in r]
    steps = [r["step"] for r in records]
    losses = [r["loss"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    window = max(1, len(losses) // 20)
    if window > 1:
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, lw=1.5, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(title)
    if records and "lr" in records[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [r["lr"] for r in records], color="gray", lw=0.8, ls="--", label="lr")
        ax2.set_ylabel("learning rate")
    ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(png_path)
