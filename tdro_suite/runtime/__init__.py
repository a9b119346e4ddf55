"""The training core that `finetune` (train/) and `optimize` (dro/) share.

- `config`: the config sections by concern (model, data, optimisation, run folder) both stages build on;
- `precision`, `accelerator`: bf16 or fp32, the accelerate `Accelerator`, the torchrun process group;
- `build`: the trainable Encoder (and a frozen one) from a `ModelConfig`;
- `run_dir`: the run folder, atomic checkpoints, and the one resume policy (a fingerprint of every
  setting that changes the result);
- `session`: optimizer, schedule, the step loop with progress, metrics and checkpoints.
A stage supplies only its data, its step function and its outputs (docs/architecture.md).
Importing this package imports no torch: `config` is read by the CLI.
"""
