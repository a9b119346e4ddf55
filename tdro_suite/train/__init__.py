"""Fine-tuning: homogeneous batches, InfoNCE, accelerate/DeepSpeed loop, checkpoints and exact resume.

Reusable pieces: `optim` (AdamW + warmup/cosine), `checkpoint` (atomic accelerate checkpoints),
`metrics` (JSONL log + loss-curve PNG), `sampler` (homogeneous batches); the entry point is
`tdro_suite.train.finetune.run_finetune`.
"""
