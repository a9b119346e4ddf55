"""Fine-tuning (`tdro-suite finetune`): homogeneous batches, InfoNCE, the export.

This stage supplies only what is its own: the mixture and its `sampler` (one task per global batch),
`batching` (texts and tokens of a step), the step function and the export in `finetune.run_finetune`.
The loop, checkpoints, resume, precision and process layout are the shared training core,
`tdro_suite.runtime`.
"""
