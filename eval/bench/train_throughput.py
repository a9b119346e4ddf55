"""Training throughput: our trainer vs sentence-transformers (MultipleNegativesRankingLoss + its trainer).

Same model (bundled MiniLM), same task's (query, positive, hard negative) triplets, same batch size,
same max length, same temperature (ST's scale 20 = τ 0.05), fp32 on CPU, in ONE process run, one
after the other. Both train on in-batch + hard negatives over 2·B candidates per query. The first
step of each (warm-up: allocator, lazy init) is excluded; samples/s counts queries per second of
optimizer steps, data preparation and tokenisation included for both. Our trainer also runs once
with one padded pass per batch (length buckets off), to show what the buckets are worth.

    .venv/bin/python eval/bench/train_throughput.py [--steps 12] [--batch-size 16] [--max-length 96] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ours(data_file: Path, args: argparse.Namespace, work: Path, *, length_buckets: bool = True) -> float:
    """Our trainer's samples/s; `length_buckets=False` forces one padded pass per batch (the ablation)."""
    from tdro_suite.modeling import encoder as encoder_module
    from tdro_suite.runtime.metrics import read_metrics
    from tdro_suite.train.config import FinetuneConfig
    from tdro_suite.train.finetune import run_finetune

    out = work / ("ours" if length_buckets else "ours-one-pass")
    shipped = encoder_module.MIN_BUCKET_ROWS_CPU
    if not length_buckets:  # no batch is ever large enough to split
        encoder_module.MIN_BUCKET_ROWS_CPU = sys.maxsize
    try:
        run_finetune(FinetuneConfig(
            model="minilm", data=[str(data_file)], output_dir=str(out), max_steps=args.steps,
            per_device_batch_size=args.batch_size, hard_negatives=1, query_max_length=args.max_length,
            passage_max_length=args.max_length, temperature=0.05, learning_rate=2e-5, seed=args.seed,
            cross_device_negatives=False, progress=False,
        ))
    finally:
        encoder_module.MIN_BUCKET_ROWS_CPU = shipped
    step_seconds = [args.batch_size / r["samples_per_s"] for r in read_metrics(out / "metrics.jsonl")][1:]
    return args.batch_size * len(step_seconds) / sum(step_seconds)


def sentence_transformers_baseline(data_file: Path, args: argparse.Namespace, work: Path) -> float:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from tdro_suite.data.reader import iter_examples
    from tdro_suite.modeling.resolve import resolve_model

    rows: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    for example in iter_examples(data_file):
        if example.negatives:
            rows["anchor"].append(example.query)
            rows["positive"].append(example.positives[0].full_text())
            rows["negative"].append(example.negatives[0].full_text())
    model = SentenceTransformer(str(resolve_model("minilm")), device="cpu")
    model.max_seq_length = args.max_length

    class StepTimer(TrainerCallback):
        """Times of step ends: consecutive differences are whole steps, data loading and collation included."""

        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, *a, **kw) -> None:
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=2e-5, warmup_steps=0, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=10_000, dataloader_num_workers=0, seed=args.seed, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=Dataset.from_dict(rows),
        loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[timer],
    )
    trainer.train()
    return args.batch_size * (len(timer.ends) - 1) / (timer.ends[-1] - timer.ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="topic_verse_nave", help="bundled training task to train on")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1,
                        help="alternate ours / sentence-transformers this many times (median), to even out load drift")
    parser.add_argument("--output", type=Path, default=None, help="also write the numbers as JSON here")
    args = parser.parse_args()

    import torch

    from tdro_suite.bundled import train_dir

    data_file = train_dir() / f"{args.task}.jsonl.gz"
    if not data_file.is_file():
        sys.exit(f"no bundled task {args.task!r} at {data_file}")
    ours_runs, one_pass_runs, st_runs = [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix=f"train-bench-{repeat}-") as tmp:
            ours_runs.append(ours(data_file, args, Path(tmp)))
            one_pass_runs.append(ours(data_file, args, Path(tmp), length_buckets=False))
            st_runs.append(sentence_transformers_baseline(data_file, args, Path(tmp)))
    ours_sps, st_sps = statistics.median(ours_runs), statistics.median(st_runs)
    one_pass_sps = statistics.median(one_pass_runs)
    result = {
        "task": args.task, "steps_timed": args.steps - 1, "batch_size": args.batch_size,
        "max_length": args.max_length, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "ours_samples_per_s": round(ours_sps, 2), "sentence_transformers_samples_per_s": round(st_sps, 2),
        "ratio_ours_over_st": round(ours_sps / st_sps, 3),
        "ours_one_pass_samples_per_s": round(one_pass_sps, 2),
        "ratio_one_pass_over_st": round(one_pass_sps / st_sps, 3),
        "runs_ours": [round(x, 2) for x in ours_runs], "runs_ours_one_pass": [round(x, 2) for x in one_pass_runs],
        "runs_st": [round(x, 2) for x in st_runs],
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))
    print(f"ours {ours_sps:.2f} samples/s (one padded pass per batch: {one_pass_sps:.2f}) | "
          f"sentence-transformers {st_sps:.2f} samples/s | ratio {ours_sps / st_sps:.3f}")
    if args.output:
        from tdro_suite.common.io import atomic_write_json

        atomic_write_json(args.output, result)


if __name__ == "__main__":
    main()
