"""The Encoder: any Hugging Face backbone + pooling + L2 normalisation + instruction prompts + LoRA.

The Encoder only encodes (Tevatron's split): losses and cross-device gathering live in
`tdro_suite.modeling.losses` and are driven by the trainers. One object serves training
(`forward` on tokenised features, with gradients) and inference (`encode` on raw texts).

Saved folders follow the Hugging Face layout plus the sentence-transformers files
(modules.json, pooling config, prompts), so `SentenceTransformer(path)` reproduces our embeddings.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tdro_suite.common.device import parse_dtype, resolve_device
from tdro_suite.common.errors import ModelNotFoundError
from tdro_suite.modeling.distributed import all_reduce_max, is_distributed
from tdro_suite.modeling.length_buckets import plan_buckets, restore_order, trim_to_rows
from tdro_suite.modeling.lora import attach_lora, is_peft
from tdro_suite.modeling.pooling import (
    POOLING_MODES,
    pool,
    pooling_for_config,
    pooling_from_sentence_transformers,
)
from tdro_suite.modeling.prompts import InstructionFormat, query_prompt
from tdro_suite.modeling.resolve import resolve_model
from tdro_suite.modeling.tokens import ensure_eos_appended

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512
PROGRESS_MIN_TEXTS = 256  # show a progress bar by default only when encoding at least this many texts
LENGTH_WINDOW = 16384  # texts whose token counts are computed in one tokenizer call
# Smallest length bucket worth its own forward pass: small on CPU (per-call overhead is tiny next to
# the compute), larger on GPU where a pass of few rows leaves the device idle.
MIN_BUCKET_ROWS_CPU = 8
MIN_BUCKET_ROWS_GPU = 64


def backbone_inputs(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tokenizer outputs a transformers backbone takes (not e.g. `length` or offsets)."""
    return {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


class Encoder(torch.nn.Module):
    """Text → L2-normalised vector, for queries and passages alike.

    Args:
        backbone: a transformers base model (or a peft model wrapping one) returning `last_hidden_state`.
        tokenizer: its tokenizer; for last-token pooling it is set up to append EOS exactly once.
        pooling: "lasttoken" (decoder LLMs), "mean" or "cls" (encoders).
        max_length: tokens per text after truncation (EOS included).
        prompts: prefixes by name: "query" (instruction for queries) and "passage" (usually empty).
        name: where the model came from (alias, hub id or folder), recorded in index manifests.
        instructions: how the model reads instructions (saved beside it as `tdro_instructions.json`);
            None for a model trained without them, which then gets no benchmark instruction.
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        tokenizer: Any,
        *,
        pooling: str,
        max_length: int = DEFAULT_MAX_LENGTH,
        normalize: bool = True,
        prompts: dict[str, str] | None = None,
        name: str = "",
        instructions: InstructionFormat | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        self.prompts = {"query": "", "passage": "", **(prompts or {})}
        self.name = name
        self.instructions = instructions
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if pooling == "lasttoken":
            ensure_eos_appended(tokenizer)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        prompts: dict[str, str] | None = None,
        attn_implementation: str | None = None,
    ) -> Encoder:
        """Load a model folder, bundled alias or hub id; a PEFT adapter folder loads its base first.

        `dtype` None or "auto" is the device's inference default (`tdro_suite.common.device.choose_dtype`:
        bf16 on GPUs and on CPUs with native bf16, else fp32). `attn_implementation` ("sdpa",
        "flash_attention_2", "eager") picks the backbone's attention kernel; None keeps transformers'
        choice (sdpa where the architecture has it).
        """
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = resolve_model(name_or_path)
        torch_device = resolve_device(str(device) if device is not None else None)
        torch_dtype = parse_dtype(dtype, torch_device)
        adapter_cfg = folder / "adapter_config.json"
        base_folder = folder
        if adapter_cfg.is_file():
            base_name = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
            if not base_name:
                raise ModelNotFoundError(f"Adapter {adapter_cfg} does not name its base model.")
            base_folder = resolve_model(base_name)
        if not (base_folder / "config.json").is_file():
            raise ModelNotFoundError(f"{base_folder} has no config.json: it is not a Hugging Face model folder.")
        config = AutoConfig.from_pretrained(base_folder)
        tok_folder = folder if (folder / "tokenizer_config.json").is_file() else base_folder
        tokenizer = AutoTokenizer.from_pretrained(tok_folder)
        attention = {"attn_implementation": attn_implementation} if attn_implementation else {}
        backbone = AutoModel.from_pretrained(base_folder, dtype=torch_dtype, **attention)
        if folder is not base_folder:
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, folder)
        st = _read_sentence_transformers_meta(folder)
        mode = pooling or pooling_from_sentence_transformers(folder) or pooling_for_config(config)
        length = max_length or st.get("max_seq_length") or _default_max_length(tokenizer, config)
        instructions = InstructionFormat.load(folder)
        saved_prompts = {**st.get("prompts", {}), **(prompts or {})}
        if instructions is not None and instructions.default_instruction and not saved_prompts.get("query"):
            saved_prompts["query"] = instructions.query_prompt(instructions.default_instruction)
        enc = cls(
            backbone,
            tokenizer,
            pooling=mode,
            max_length=length,
            prompts=saved_prompts,
            name=str(name_or_path),
            instructions=instructions,
        )
        enc.to(torch_device)
        enc.eval()
        return enc

    def sharing_weights(self) -> Encoder:
        """An encoder on these very weights with its own tokenizer, for encoding from another thread.

        Hugging Face fast tokenizers change their truncation state on every call and fail with "Already
        borrowed" when two threads call one at once; the weights are only read under inference mode.
        """
        twin = Encoder(self.backbone, copy.deepcopy(self.tokenizer), pooling=self.pooling, max_length=self.max_length,
                       normalize=self.normalize, prompts=dict(self.prompts), name=self.name,
                       instructions=self.instructions)
        twin.train(self.training)
        return twin

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def dimension(self) -> int:
        return int(self.base_model.config.hidden_size)

    @property
    def base_model(self) -> torch.nn.Module:
        """The transformers model under any peft wrapper."""
        return self.backbone.get_base_model() if is_peft(self.backbone) else self.backbone

    # ------------------------------------------------------------------ tokenising
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenise, truncate and pad; for last-token pooling every row ends with exactly one EOS."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )

    # ------------------------------------------------------------------ forward / encode
    def forward(self, features: dict[str, torch.Tensor], *, lockstep: bool = False) -> torch.Tensor:
        """Embed tokenised texts: [B, T] features → [B, D] (normalised when `self.normalize`).

        A batch of mixed lengths runs as a few length buckets, each padded only to its own longest
        row (see `length_buckets`): same embeddings, fewer pad tokens through the backbone.
        `lockstep`: every rank of the process group calls this at the same time (training), so the
        ranks agree on the bucket count and make the same number of backbone calls, which DeepSpeed
        ZeRO-3 needs (each call gathers the sharded parameters). A bucket left empty on this rank
        runs one row whose output is dropped. Only for callers in lockstep: index encoding, for
        one, runs a different number of batches on each rank.
        """
        inputs = backbone_inputs(features)
        min_rows = MIN_BUCKET_ROWS_GPU if inputs["input_ids"].is_cuda else MIN_BUCKET_ROWS_CPU
        agree = all_reduce_max if lockstep and is_distributed() else None
        buckets = plan_buckets(inputs["attention_mask"], min_rows, agree=agree)
        if buckets is None:
            emb = self._embed(inputs)
        else:
            parts = [self._embed(trim_to_rows(inputs, rows if len(rows) else buckets[0][:1]))[: len(rows)]
                     for rows in buckets]
            emb = restore_order(parts, buckets)
        return self._normalized(emb)

    def _normalized(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, p=2, dim=-1) if self.normalize else emb

    def _embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One padded pass through the backbone, pooled to float32 [B, D].

        `use_cache=False`: decoders built by transformers default to `use_cache=True` and would build a
        key/value cache on every forward (≈ 3 GB per 64 × 512 batch for a 0.5B model in bf16) that an
        embedding never reads. Every backbone we load (BERT-style ones too) takes the argument.
        """
        hidden = self.backbone(**inputs, use_cache=False).last_hidden_state
        return pool(hidden, inputs["attention_mask"], self.pooling).float()

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 32,
        prompt: str | None = None,
        prompt_name: str | None = None,
        max_length: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Encode texts into a float32 [N, D] array.

        Texts are sorted by their token count (not characters: a line of code or CJK holds several times
        the tokens of English prose per character) so each batch pads little, then put back in input
        order. `prompt` is a literal prefix; `prompt_name` picks one of `self.prompts` ("query"/"passage").
        """
        if isinstance(texts, str):
            texts = [texts]
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"unknown prompt name {prompt_name!r}; known: {sorted(self.prompts)}")
            prompt = self.prompts[prompt_name]
        full = [f"{prompt}{t}" if prompt else t for t in texts]
        if not full:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = self.length_order(full, batch_size, max_length)
        out = np.empty((len(full), self.dimension), dtype=np.float32)
        show = len(full) >= PROGRESS_MIN_TEXTS if show_progress is None else show_progress
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                starts = range(0, len(full), batch_size)
                for start in tqdm(starts, desc="encode", unit="batch", disable=not show):
                    idx = order[start : start + batch_size]
                    features = self.tokenize([full[i] for i in idx], max_length=max_length)
                    out[idx] = self(self._to_device(features)).cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def encode_pass(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Texts (prompts already applied) through exactly ONE padded forward pass, in order: float32 [N, D].

        For a caller that plans its own passes (the server's `plan_passes`): no length sorting, no
        length buckets, and no train/eval switch (which walks every module, about 2 ms of Python per call
        for MiniLM). The encoder must be in eval mode, as `from_pretrained` leaves it.
        """
        if self.training:
            raise RuntimeError("encode_pass runs in eval mode only: call .eval() first")
        with torch.inference_mode():
            features = self._to_device(self.tokenize(texts, max_length=max_length))
            return self._normalized(self._embed(backbone_inputs(features))).cpu().numpy()

    def length_order(self, texts: Sequence[str], batch_size: int, max_length: int | None = None) -> np.ndarray:
        """Indices of `texts`, longest first by token count after truncation; input order for one batch.

        Counting tokens costs one extra tokenizer pass (the fast tokenizers run it in Rust, windows of
        `LENGTH_WINDOW` texts keep memory flat): about 1% of a CPU forward pass for MiniLM, and it raises
        the real tokens per padded slot in batches of 32 from 0.58 to 0.81 on mixed short texts (code, prose, verse).
        """
        if len(texts) <= batch_size:
            return np.arange(len(texts))
        lengths = np.empty(len(texts), dtype=np.int64)
        limit = max_length or self.max_length
        for start in range(0, len(texts), LENGTH_WINDOW):
            window = list(texts[start : start + LENGTH_WINDOW])
            counted = self.tokenizer(window, truncation=True, max_length=limit, return_length=True,
                                     return_attention_mask=False, return_token_type_ids=False)
            lengths[start : start + len(window)] = counted["length"]
        return np.argsort(-lengths, kind="stable")

    def _to_device(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Move a tokenised batch to the model; on CUDA from pinned memory, so the copy runs asynchronously."""
        device = self.device
        if device.type == "cuda":
            return {k: v.pin_memory().to(device, non_blocking=True) for k, v in features.items()}
        return {k: v.to(device) for k, v in features.items()}

    def encode_queries(self, texts: str | Sequence[str], instruction: str | None = None, **kw: Any) -> np.ndarray:
        """Queries get the instruction prompt, in the model's own template when it saved one (or the model's
        default query prompt when no instruction is given)."""
        if instruction is not None:
            return self.encode(texts, prompt=self.query_prompt_for(instruction), **kw)
        return self.encode(texts, prompt_name="query", **kw)

    def query_prompt_for(self, instruction: str | None) -> str:
        """The query prefix for `instruction`: the saved template, else the E5-Mistral one."""
        if self.instructions is not None:
            return self.instructions.query_prompt(instruction)
        return query_prompt(instruction)

    def encode_passages(self, texts: str | Sequence[str], **kw: Any) -> np.ndarray:
        return self.encode(texts, prompt_name="passage", **kw)

    # ------------------------------------------------------------------ training helpers
    def add_lora(
        self, rank: int = 16, alpha: int = 32, dropout: float = 0.1, target_modules: list[str] | None = None
    ) -> None:
        """Attach LoRA adapters (target modules auto-detected); only they train afterwards."""
        self.backbone = attach_lora(self.backbone, rank, alpha, dropout, target_modules)

    def merge_lora(self) -> None:
        """Fold the adapters into the base weights in place; the encoder is a plain model afterwards."""
        if is_peft(self.backbone):
            self.backbone = self.backbone.merge_and_unload()

    def freeze_unread_modules(self) -> list[str]:
        """Stop training the parameters no embedding reads (returns their names): the base model's `pooler`.

        BERT-style models (BERT, RoBERTa, XLM-R, MPNet, ...) compute a pooled output that our pooling
        never reads, so its parameters (and LoRA adapters put on it) never get a gradient. Frozen, they
        leave the optimizer (which skipped them anyway: same updates) and DDP needs no
        `find_unused_parameters`, whose graph search runs on every step.
        """
        pooler = getattr(self.base_model, "pooler", None)
        if not isinstance(pooler, torch.nn.Module):
            return []
        ids = {id(p) for p in pooler.parameters()}
        frozen = [name for name, p in self.named_parameters() if id(p) in ids and p.requires_grad]
        pooler.requires_grad_(False)
        return frozen

    def enable_gradient_checkpointing(self) -> None:
        self.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if is_peft(self.backbone):
            self.backbone.enable_input_require_grads()

    # ------------------------------------------------------------------ saving
    def save(self, path: str | Path, *, merge: bool = True) -> Path:
        """Write a folder that loads in transformers, in sentence-transformers and back into `Encoder`.

        With LoRA attached, `merge=True` merges the adapters first (the exported model is plain);
        `merge=False` writes only the adapter, which `Encoder.from_pretrained` loads onto its base.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if merge:
            self.merge_lora()
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        _write_sentence_transformers_meta(path, self)
        if self.instructions is not None:
            self.instructions.save(path)
        return path


def _default_max_length(tokenizer: Any, config: Any) -> int:
    """The smallest of the tokenizer's limit, the model's position table and DEFAULT_MAX_LENGTH."""
    limits = [DEFAULT_MAX_LENGTH]
    for value in (getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)):
        if isinstance(value, int) and 0 < value < 10**7:  # tokenizers without a limit report a huge sentinel
            limits.append(value)
    return min(limits)


def _read_sentence_transformers_meta(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        meta["max_seq_length"] = json.loads(st_cfg.read_text()).get("max_seq_length")
    prompts_cfg = folder / "config_sentence_transformers.json"
    if prompts_cfg.is_file():
        meta["prompts"] = json.loads(prompts_cfg.read_text()).get("prompts") or {}
    return meta


def _write_sentence_transformers_meta(path: Path, enc: Encoder) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if enc.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {"embedding_dimension": enc.dimension, "pooling_mode": enc.pooling, "include_prompt": True}, indent=2
        )
    )
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": enc.max_length, "do_lower_case": False}, indent=2)
    )
    (path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {"prompts": enc.prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"},
            indent=2,
            ensure_ascii=False,
        )
    )
