"""Count what one optimizer step of a stage costs the host: tokenizer calls, host reads, collectives.

Run by tests/test_step_costs.py under torchrun (2 gloo processes) as
`step_costs.py finetune|optimize CONFIG_JSON OUT_DIR`. Counted inside the stage's step function only
(the session's own optimizer step, metrics and checkpoints are not), and only calls made by
tdro_suite code: `Encoder.tokenize`; the tensor reads that wait for the device on a GPU (`.item()`,
`.tolist()`, `.cpu()`, `.numpy()`, `int()`, `float()`, `bool()`); and torch.distributed collectives.
Each rank writes `costs-{stage}-rank{r}.json`: one record per step.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import tdro_suite
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.runtime.session import TrainingSession

PACKAGE = str(Path(tdro_suite.__file__).parent)
HOST_READS = ("item", "tolist", "cpu", "numpy", "__int__", "__float__", "__bool__")
COLLECTIVES = ("all_gather", "all_reduce", "all_gather_object", "broadcast", "all_gather_into_tensor")


class Costs:
    """Counters that are live only between `start` and `stop` (one step function call)."""

    def __init__(self) -> None:
        self.live = False
        self.steps: list[dict[str, Any]] = []
        self.current: dict[str, Counter[str]] = {}

    def start(self) -> None:
        self.current = {"tokenize": Counter(), "host_reads": Counter(), "collectives": Counter()}
        self.live = True

    def stop(self) -> None:
        self.live = False
        self.steps.append({kind: dict(counter) for kind, counter in self.current.items()})

    def count(self, kind: str, what: str) -> None:
        if self.live:
            self.current[kind][what] += 1


def caller_in_package(depth: int = 2) -> str | None:
    """`module:function` of the caller `depth` frames up when it is tdro_suite code, else None."""
    frame = sys._getframe(depth)
    if not frame.f_code.co_filename.startswith(PACKAGE):
        return None
    return f"{Path(frame.f_code.co_filename).stem}:{frame.f_code.co_name}"


def install(costs: Costs) -> None:
    tokenize = Encoder.tokenize

    def counting_tokenize(self: Encoder, *args: Any, **kwargs: Any) -> Any:
        costs.count("tokenize", "calls")
        return tokenize(self, *args, **kwargs)

    Encoder.tokenize = counting_tokenize  # type: ignore[method-assign]
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def reading(self: torch.Tensor, *args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            if costs.live and (where := caller_in_package()):
                costs.count("host_reads", f"{where}.{_name}")
            return _original(self, *args, **kw)

        setattr(torch.Tensor, name, reading)
    for name in COLLECTIVES:
        original = getattr(dist, name)

        def collective(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            if costs.live and (where := caller_in_package()):
                costs.count("collectives", f"{where}.{_name}")
            return _original(*args, **kw)

        setattr(dist, name, collective)
    run = TrainingSession.run

    def counting_run(self: TrainingSession, step_fn: Any) -> int:
        def counted(step: int) -> Any:
            costs.start()
            try:
                return step_fn(step)
            finally:
                costs.stop()

        return run(self, counted)

    TrainingSession.run = counting_run  # type: ignore[method-assign]


def main(stage: str, config_json: str, out: Path) -> None:
    torch.set_num_threads(1)
    costs = Costs()
    install(costs)
    values = json.loads(config_json)
    if stage == "finetune":
        from tdro_suite.train.config import FinetuneConfig
        from tdro_suite.train.finetune import run_finetune

        run_finetune(FinetuneConfig.model_validate(values))
    else:
        from tdro_suite.dro.config import OptimizeConfig
        from tdro_suite.dro.optimize import run_optimize

        run_optimize(OptimizeConfig.model_validate(values))
    (out / f"costs-{stage}-rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(costs.steps, indent=1))


if __name__ == "__main__":
    from clean_exit import exit_now  # beside this script, which Python puts first on sys.path

    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
    exit_now()
