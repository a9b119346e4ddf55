"""One tDRO optimizer step: losses of proxy and reference → group measure → new weights → proxy update.

Order within a step (docs/architecture.md, "tDRO"): the group weights are updated from this step's measure first,
then the proxy is trained on Σᵢ wᵢ ℓᵖᵢ with wᵢ = α_{k(i)} / Σⱼ α_{k(j)} over the whole global batch.

With gradient accumulation the measure must cover every micro-batch before any proxy gradient
is taken, without keeping all graphs in memory: pass 1 runs proxy and reference without gradient
over all micro-batches (saving the RNG state before each), the weights are updated once, and
pass 2 restores each RNG state and recomputes the proxy forward with gradient, so dropout masks
and losses are identical in both passes (the trick GradCache uses). With one micro-batch the
graph of the single forward is kept and no recomputation happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tdro_suite.dro.batches import Item
from tdro_suite.dro.group_weights import GroupWeights
from tdro_suite.dro.measures import SmallShare, group_mean, group_measure
from tdro_suite.modeling.distributed import all_gather_nograd, world_size
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.modeling.losses import hard_negative_infonce


@dataclass(frozen=True)
class Lengths:
    query: int
    passage: int


@dataclass
class StepStats:
    """What one step measured, over the global batch (identical on every rank)."""

    weights: Tensor  # α after this step's update [K]
    measure: Tensor  # g before clipping [K]
    proxy_loss: Tensor  # mean ℓᵖ per task [K]
    reference_loss: Tensor | None  # mean ℓʳ per task [K]
    weighted_loss: float  # Σ wᵢ ℓᵖᵢ over the global batch
    overall_proxy: float  # mean ℓᵖ over the global batch
    overall_reference: float | None  # mean ℓʳ over the global batch
    examples: int


Features = tuple[dict[str, Tensor], dict[str, Tensor]]


def features(encoder: Encoder, items: Sequence[Item], lengths: Lengths) -> Features:
    """Tokenised queries [b, T] and passages [b·G, T] (grouped per query) on the encoder's device."""
    queries = encoder.tokenize([it.query for it in items], max_length=lengths.query)
    passages = encoder.tokenize([p for it in items for p in it.passages], max_length=lengths.passage)
    device = encoder.device
    return {k: v.to(device) for k, v in queries.items()}, {k: v.to(device) for k, v in passages.items()}


def losses_of(model: nn.Module, inputs: Features, temperature: float, *, bf16: bool = False) -> Tensor:
    """Hard-negatives-only InfoNCE per example [b] of tokenised `inputs`; `model` is an Encoder or an
    (DDP-wrapped) `EncoderModule`.

    With `bf16` the forward runs under bf16 autocast (fp32 master weights); scores and losses are fp32.
    """
    q_feat, p_feat = inputs
    with torch.autocast(q_feat["input_ids"].device.type, dtype=torch.bfloat16, enabled=bf16):
        q, p = model(q_feat, p_feat) if not isinstance(model, Encoder) else (model(q_feat), model(p_feat))
    return hard_negative_infonce(q, p, temperature)


def per_example_losses(
    model: nn.Module,
    encoder: Encoder,
    items: Sequence[Item],
    lengths: Lengths,
    temperature: float,
    *,
    bf16: bool = False,
) -> Tensor:
    """`losses_of` the items, tokenised by `encoder` (the Encoder under `model`)."""
    return losses_of(model, features(encoder, items, lengths), temperature, bf16=bf16)


@torch.no_grad()
def reference_losses(
    reference: Encoder, items: Sequence[Item], lengths: Lengths, temperature: float, *, bf16: bool = False
) -> Tensor:
    return per_example_losses(reference, reference, items, lengths, temperature, bf16=bf16)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _maybe_no_sync(model: nn.Module, skip_sync: bool) -> Iterator[None]:
    if skip_sync and hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    else:
        yield


def tdro_step(
    *,
    model: nn.Module,
    proxy: Encoder,
    reference: Encoder | None,
    micro_batches: Sequence[Sequence[Item]],
    group_weights: GroupWeights,
    measure: str,
    small_share: SmallShare = SmallShare(),
    lengths: Lengths,
    temperature: float,
    bf16: bool = False,
    backward: Callable[[Tensor], None] = Tensor.backward,
    shared_tokens: bool = False,
) -> StepStats:
    """Forward/backward of one optimizer step (gradients are left in `.grad`; the caller steps the optimizer).

    `model` is what runs the proxy forward: the `EncoderModule` (DDP-wrapped under torchrun) or the
    Encoder itself; `backward` is `accelerator.backward` in a run. Losses and task ids are gathered over
    all ranks, so every rank computes the same measure and the same weights.

    Each micro-batch is tokenised once and its tensors serve both proxy passes and, with
    `shared_tokens` (the reference tokenises like the proxy: `modeling.tokens.same_tokenization`,
    decided once per run since it compares whole vocabularies), the reference too; otherwise the
    reference tokenises it once more with its own tokenizer.
    """
    device = proxy.device
    keep_graph = len(micro_batches) == 1
    proxy_parts: list[Tensor] = []
    ref_parts: list[Tensor] = []
    rng_states = []
    inputs: list[Features] = []
    graph_loss: Tensor | None = None
    for items in micro_batches:
        inputs.append(features(proxy, items, lengths))
        rng_states.append(_rng_state(device))
        with contextlib.nullcontext() if keep_graph else torch.no_grad():
            losses = losses_of(model, inputs[-1], temperature, bf16=bf16)
        if keep_graph:
            graph_loss = losses
        proxy_parts.append(losses.detach())
        if reference is not None:
            ref_inputs = inputs[-1] if shared_tokens else features(reference, items, lengths)
            with torch.no_grad():
                ref_parts.append(losses_of(reference, ref_inputs, temperature, bf16=bf16))
    local_ids = torch.tensor([it.task_id for mb in micro_batches for it in mb], dtype=torch.long, device=device)
    local_proxy = torch.cat(proxy_parts)
    # every rank holds global_batch_size / (processes × accumulation) examples per micro-batch: no size exchange
    all_proxy = all_gather_nograd(local_proxy, equal_sizes=True)
    all_ids = all_gather_nograd(local_ids, equal_sizes=True)
    all_ref = all_gather_nograd(torch.cat(ref_parts), equal_sizes=True) if reference is not None else None
    k = group_weights.num_tasks
    measured = group_measure(measure, all_proxy, all_ref, all_ids, k, small_share=small_share)
    alpha = group_weights.update(measured).to(device)

    normaliser = alpha[all_ids].sum()
    scale = float(world_size())
    offset = 0
    for m, items in enumerate(micro_batches):
        ids = local_ids[offset : offset + len(items)]
        offset += len(items)
        if keep_graph:
            losses = graph_loss
        else:
            _set_rng_state(rng_states[m], device)
        with _maybe_no_sync(model, skip_sync=m < len(micro_batches) - 1):
            if not keep_graph:
                losses = losses_of(model, inputs[m], temperature, bf16=bf16)
            weighted = (alpha[ids].to(losses.dtype) / normaliser.to(losses.dtype) * losses).sum() * scale
            backward(weighted)
    weighted_total = float((alpha[all_ids] / normaliser * all_proxy.double()).sum())
    return StepStats(
        weights=alpha.cpu(),
        measure=measured.cpu(),
        proxy_loss=group_mean(all_proxy, all_ids, k).cpu(),
        reference_loss=group_mean(all_ref, all_ids, k).cpu() if all_ref is not None else None,
        weighted_loss=weighted_total,
        overall_proxy=float(all_proxy.double().mean()),
        overall_reference=float(all_ref.double().mean()) if all_ref is not None else None,
        examples=int(all_ids.numel()),
    )
