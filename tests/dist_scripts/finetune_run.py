"""Launched by tests/test_distributed.py under torchrun: `run_finetune` from a JSON config, recording per rank
which task and which examples the sampler gave at every step (to show all ranks drew the same ones)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tdro_suite.train import sampler as sampler_module
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import run_finetune


def main(config_json: str, record_dir: Path) -> None:
    draws: list[dict[str, object]] = []
    original = sampler_module.HomogeneousBatchSampler.next_batch

    def recording_next_batch(self: sampler_module.HomogeneousBatchSampler) -> sampler_module.GlobalBatch:
        batch = original(self)
        draws.append({"step": batch.step, "task": batch.task, "indices": list(batch.indices)})
        return batch

    sampler_module.HomogeneousBatchSampler.next_batch = recording_next_batch  # type: ignore[method-assign]
    run_finetune(FinetuneConfig.model_validate(json.loads(config_json)))  # joins and leaves the process group
    (record_dir / f"draws-rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(draws))


if __name__ == "__main__":
    from clean_exit import exit_now  # beside this script, which Python puts first on sys.path

    main(sys.argv[1], Path(sys.argv[2]))
    exit_now()
