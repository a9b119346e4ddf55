"""What `tdro-suite index` and `tdro-suite search` do with their configs: the library side of both commands.

`run_index` joins torchrun's process group when launched by it and gives each process its device;
`run_search` picks the query model (the one the index records unless one is given) and checks it
against the index before searching. The commands only print.
"""

from __future__ import annotations

from typing import Any

from tdro_suite.common.errors import ConfigError
from tdro_suite.index.config import IndexConfig, SearchConfig
from tdro_suite.index.encode import DistInfo, dist_info, init_distributed


def join_processes(device: str | None = None) -> tuple[DistInfo, str | None]:
    """Join torchrun's process group when there are several processes; the device this one encodes on.

    Without an explicit device, process r of several takes cuda:LOCAL_RANK (the CPU without CUDA);
    a single process keeps `device` (None: the Encoder's automatic choice).
    """
    info = dist_info()
    init_distributed(info)
    if device is None and info.world_size > 1:
        import torch

        device = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    return info, device


def run_index(cfg: IndexConfig) -> Any:
    """Encode `cfg.corpus` (split across processes) and build the index folder; the built index on rank 0, else None."""
    from tdro_suite.index.build import build_index
    from tdro_suite.modeling import Encoder

    info, device = join_processes(cfg.device)
    encoder = Encoder.from_pretrained(cfg.model, max_length=cfg.max_length, device=device)
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
    encoder = Encoder.from_pretrained(model_name, max_length=cfg.max_length, device=cfg.device)
    check_encoder(dense, encoder)
    return search_queries(dense, encoder, pairs, k=cfg.k, instruction=cfg.instruction, batch_size=cfg.batch_size)
