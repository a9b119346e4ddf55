"""Launched by tests/test_zero3.py under torchrun with DeepSpeed ZeRO-3 (accelerate's environment variables):
`run_finetune` from a JSON config on CPU processes (gloo), recording per rank, for every forward of the
trained module, the bucket count the rank would pick alone and how many backbone calls it made.

accelerate switches DeepSpeed off when told `cpu=True` (what `make_accelerator` says on a machine without
CUDA), so this script builds the Accelerator with `cpu=False`, as on a GPU; everything else is the stage's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from tdro_suite.modeling import length_buckets
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.runtime.module import EncoderModule
from tdro_suite.train import finetune
from tdro_suite.train.config import FinetuneConfig


def main(config_json: str, out: Path) -> None:
    from accelerate import Accelerator

    torch.set_num_threads(1)
    forwards: list[dict[str, list[int]]] = []
    layout: dict[str, Any] = {}

    def make_accelerator(precision: str, *, grad_accumulation: int = 1, **_: Any) -> Any:
        accelerator = Accelerator(cpu=False, mixed_precision="no", gradient_accumulation_steps=grad_accumulation)
        layout["type"] = str(accelerator.distributed_type)
        layout["zero_stage"] = accelerator.state.deepspeed_plugin.zero_stage
        return accelerator

    count, embed, module_forward = length_buckets.bucket_count, Encoder._embed, EncoderModule.forward

    def recording_count(*args: Any, **kwargs: Any) -> torch.Tensor:
        chosen = count(*args, **kwargs)
        if forwards:
            forwards[-1]["own_counts"].append(int(chosen))
        return chosen

    def counting_embed(self: Encoder, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if forwards:
            forwards[-1]["backbone_calls"][-1] += 1
        return embed(self, inputs)

    def recording_forward(self: EncoderModule, queries: Any = None, passages: Any = None) -> Any:
        forwards.append({"own_counts": [], "backbone_calls": [0]})
        return module_forward(self, queries, passages)

    finetune.make_accelerator = make_accelerator  # type: ignore[assignment]
    length_buckets.bucket_count = recording_count  # type: ignore[assignment]
    Encoder._embed = counting_embed  # type: ignore[method-assign]
    EncoderModule.forward = recording_forward  # type: ignore[method-assign]
    finetune.run_finetune(FinetuneConfig.model_validate(json.loads(config_json)))
    record = {"layout": layout, "forwards": forwards}
    (out / f"zero3-rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    from clean_exit import exit_now  # beside this script, which Python puts first on sys.path

    main(sys.argv[1], Path(sys.argv[2]))
    exit_now()
