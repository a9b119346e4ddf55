"""What `tdro-suite eval` does with its config: the benchmark first (bad data fails before a model loads),
then the model, the evaluation and the report folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tdro_suite.evaluation.config import EvalConfig


def default_output(bench: str, model: str) -> Path:
    """`outputs/eval/<bench>-<model>`, each reduced to a file-name-safe slug."""

    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name or text).strip("-") or "x"

    return Path("outputs") / "eval" / f"{slug(bench)}-{slug(model)}"


def run_eval(cfg: EvalConfig) -> tuple[dict[str, Any] | None, Path]:
    """Evaluate `cfg.model` on `cfg.bench`; the results and the folder holding results.json / results.md.

    Under torchrun every process encodes and searches its share of each corpus (on cuda:LOCAL_RANK, or the
    CPU without CUDA, unless `cfg.device` names one); the first fetches a public benchmark before the others
    read it, and alone scores and writes the report (the others get None).
    """
    from tdro_suite.evaluation.benchmarks import load_benchmark
    from tdro_suite.evaluation.harness import evaluate
    from tdro_suite.evaluation.public import is_public, wait_until_cached
    from tdro_suite.index.encode import DistInfo, barrier
    from tdro_suite.modeling import Encoder
    from tdro_suite.runtime.accelerator import process_group

    out_dir = Path(cfg.output) if cfg.output else default_output(cfg.bench, cfg.model)
    with process_group() as state:
        info = DistInfo(state.process_index, state.num_processes, state.local_process_index)
        public = is_public(cfg.bench)
        if not info.is_main:  # the first process fetches (once) what the others then read from the cache
            wait_until_cached(cfg.bench, cfg.langs) if public else barrier()
        benchmark = load_benchmark(cfg.bench, split=cfg.split, langs=cfg.langs)
        if info.is_main and not public:
            barrier()
        device = cfg.device if cfg.device is not None or info.world_size == 1 else str(state.device)
        encoder = Encoder.from_pretrained(cfg.model, max_length=cfg.max_length, device=device, dtype=cfg.dtype)
        results = evaluate(
            encoder, benchmark, index_type=cfg.index_type, search_params=cfg.search_params(),
            k_values=cfg.k_values, batch_size=cfg.batch_size, instruction=cfg.instruction,
            use_cache=cfg.use_cache, shard_size=cfg.shard_size, out_dir=out_dir,
            embedding_dtype=cfg.embedding_dtype, info=info, show_progress=True,
        )
    return results, out_dir


def plan_eval(cfg: EvalConfig) -> tuple[list[str], str | None]:
    """`eval --dry-run`: what the benchmark needs (cached, or what would be fetched) and why it would fail."""
    from tdro_suite.evaluation.public import (
        hub_offline,
        is_public,
        mirror_root,
        offline_message,
        plan_lines,
        public_collections,
        reachable,
    )

    bench = cfg.bench
    if not is_public(bench):
        from tdro_suite.evaluation.benchmarks import load_benchmark

        loaded = load_benchmark(bench, split=cfg.split, langs=cfg.langs)
        return [f"{bench}: local, {len(loaded.collections)} collections; nothing to fetch."], None
    collections = public_collections(bench, None if bench == "mkqa" else cfg.langs)
    lines = plan_lines(bench, collections)
    missing = [c for c in collections if not c.is_cached()]
    if not missing or mirror_root() is not None:
        return lines, None
    reason = "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set" if hub_offline() else reachable()
    return lines, offline_message(bench, missing, reason) if reason else None
