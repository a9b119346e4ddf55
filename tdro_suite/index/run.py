"""What `tdro-suite index` and `tdro-suite search` do with their configs: the library side of both commands.

`run_index` joins torchrun's process group when launched by it (and leaves it after, through the
training core's `process_group`, the one place processes meet) and gives each process its device;
`run_search` picks the query model (the one the index records unless one is given) and checks it
against the index before searching. The commands only print.
"""

from __future__ import annotations

from typing import Any

from tdro_suite.common.errors import ConfigError
from tdro_suite.index.config import IndexConfig, SearchConfig
from tdro_suite.index.encode import DistInfo


def run_index(cfg: IndexConfig) -> Any:
    """Encode `cfg.corpus` (split across processes) and build the index folder; the built index on rank 0, else None.

    Without an explicit device, process r of several takes its own (cuda:LOCAL_RANK, or the CPU without
    CUDA); a single process keeps `cfg.device` (None: the Encoder's automatic choice).
    """
    from tdro_suite.index.build import build_index
    from tdro_suite.modeling import Encoder
    from tdro_suite.runtime.accelerator import process_group

    with process_group() as state:
        info = DistInfo(state.process_index, state.num_processes, state.local_process_index)
        device = cfg.device if cfg.device is not None or info.world_size == 1 else str(state.device)
        encoder = Encoder.from_pretrained(
            cfg.model, max_length=cfg.max_length, device=device, dtype=cfg.dtype,
            attn_implementation=cfg.attn_implementation,
        )
        return build_index(
            encoder, cfg.corpus, cfg.output, index_type=cfg.index_type, search_params=cfg.search_params(),
            batch_size=cfg.batch_size, shard_size=cfg.shard_size, store_docs=cfg.store_docs,
            keep_shards=cfg.keep_shards, info=info,
        )


def run_search(cfg: SearchConfig) -> list[dict[str, Any]]:
    """Rankings for the queries of `cfg` (see `search_queries`), with the model the index was built with by default."""
    from tdro_suite.index.dense_index import DenseIndex
    from tdro_suite.index.search import check_encoder, gather_queries, search_queries
    from tdro_suite.modeling import Encoder

    pairs = gather_queries(cfg.query, cfg.queries)
    dense = DenseIndex.load(cfg.index)
    model_name = cfg.model or dense.manifest.get("model")
    if not model_name:
        raise ConfigError(f"{cfg.index}: the manifest records no model; pass --model.")
    if cfg.model:
        dense.check_model(cfg.model)  # before loading a model that cannot be used anyway
    encoder = Encoder.from_pretrained(model_name, max_length=cfg.max_length, device=cfg.device, dtype=cfg.dtype)
    check_encoder(dense, encoder)
    return search_queries(dense, encoder, pairs, k=cfg.k, instruction=cfg.instruction, batch_size=cfg.batch_size)
