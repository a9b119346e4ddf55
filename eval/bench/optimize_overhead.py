"""What one tDRO step costs relative to one fine-tuning step on the same batch.

Both steps tokenise the same texts, run the proxy forward and backward, and take one AdamW step.
The fine-tuning step uses fine-tuning's loss (InfoNCE with hard and in-batch negatives, through
`EncoderModule`, as `finetune` runs it); the tDRO step is `tdro_step` (proxy losses + frozen-reference forward +
gather + group measure + weight update + weighted backward). The expected extra is the reference
forward, which is also timed alone. Steps are interleaved and the median of `--repeats` is reported.

    .venv/bin/python eval/bench/optimize_overhead.py --model minilm --batch-size 13 --hard-negatives 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from tdro_suite.bundled import train_dir
from tdro_suite.data.tasks import load_tasks
from tdro_suite.dro.batches import draw_global_batch, load_task_data
from tdro_suite.dro.group_weights import GroupWeights
from tdro_suite.dro.step import Lengths, reference_losses, tdro_step
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.modeling.losses import InfoNCELoss, text_keys
from tdro_suite.modeling.tokens import same_tokenization
from tdro_suite.runtime.module import EncoderModule
from tdro_suite.runtime.optim import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--reference", default=None, help="Reference model (default: the same as --model).")
    parser.add_argument("--batch-size", type=int, default=13)
    parser.add_argument("--hard-negatives", type=int, default=3)
    parser.add_argument("--query-max-length", type=int, default=32)
    parser.add_argument("--passage-max-length", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers to this JSON file.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()

    tasks = load_task_data(load_tasks([train_dir()]))
    items = draw_global_batch(tasks, 0, batch_size=args.batch_size, hard_negatives=args.hard_negatives, seed=0)
    lengths = Lengths(args.query_max_length, args.passage_max_length)
    proxy = Encoder.from_pretrained(args.model, device=args.device)
    proxy.train()
    reference = Encoder.from_pretrained(args.reference or args.model, device=args.device)
    reference.eval()
    reference.requires_grad_(False)
    optimizer = build_optimizer(proxy, 1e-5)
    module = EncoderModule(proxy)
    infonce = InfoNCELoss(args.temperature)
    weights = GroupWeights(len(tasks), step_size=0.02)
    sync = torch.cuda.synchronize if proxy.device.type == "cuda" else (lambda: None)
    shared_tokens = same_tokenization(proxy.tokenizer, reference.tokenizer)  # once, as `optimize` decides it

    def finetune_step() -> None:
        queries = proxy.tokenize([it.query for it in items], max_length=lengths.query)
        texts = [p for it in items for p in it.passages]
        passages = proxy.tokenize(texts, max_length=lengths.passage)
        device = proxy.device
        q, p = module({k: v.to(device) for k, v in queries.items()}, {k: v.to(device) for k, v in passages.items()})
        loss = infonce(q, p, text_keys(texts).to(device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def tdro_full_step() -> None:
        tdro_step(
            model=module, proxy=proxy, reference=reference, micro_batches=[items], group_weights=weights,
            measure="relative", lengths=lengths, temperature=args.temperature, shared_tokens=shared_tokens,
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def reference_forward() -> None:
        reference_losses(reference, items, lengths, args.temperature)

    steps = {"finetune step": finetune_step, "tDRO step": tdro_full_step, "reference forward": reference_forward}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, fn in steps.items():
            sync()
            tic = time.perf_counter()
            fn()
            sync()
            if repeat:
                times[name].append(time.perf_counter() - tic)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["tDRO step"] / median["finetune step"]
    rest = median["tDRO step"] - median["finetune step"] - median["reference forward"]

    table = Table(title=f"tDRO step vs fine-tuning step ({args.model}, {args.batch_size} queries × "
                  f"{1 + args.hard_negatives} passages, {proxy.device}, {torch.get_num_threads()} threads)")
    table.add_column("what")
    table.add_column("median s", justify="right")
    table.add_column("× finetune step", justify="right")
    for name, value in median.items():
        table.add_row(name, f"{value:.3f}", f"{value / median['finetune step']:.2f}")
    table.add_row("tDRO − finetune − reference (gather, measure, update)", f"{rest:.3f}", "")
    console.print(table)
    console.print(f"One tDRO step costs {ratio:.2f}× one fine-tuning step on the same batch.")
    if args.json:
        record = {
            "model": args.model, "batch_size": args.batch_size, "hard_negatives": args.hard_negatives,
            "device": str(proxy.device), "threads": torch.get_num_threads(), "platform": platform.platform(),
            "median_s": median, "ratio": ratio, "repeats": args.repeats,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
