"""GradCache (Gao et al., 2021): contrastive batches larger than memory, with the exact same gradients.

The loss couples every query with every passage, so it cannot be split into independent chunks.
GradCache splits the ENCODER work instead:
  1. embed all chunks without building graphs (memory: one chunk of activations at a time);
  2. compute the loss on those embeddings (as leaf tensors) and backpropagate to them only,
     caching d loss / d embedding;
  3. re-embed each chunk WITH a graph and backpropagate `sum(embedding · cached gradient)`, which
     by the chain rule adds exactly that chunk's share of d loss / d parameters.
Dropout must draw the same masks in steps 1 and 3, so each chunk's RNG state is recorded before
its first pass and replayed before its second. Under DDP every chunk but the last runs inside
`no_sync`, so gradients are all-reduced once, after the last chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Features = dict[str, Tensor]


@dataclass
class RandomState:
    """CPU and CUDA RNG states, to replay the same dropout masks in the second pass."""

    cpu: Tensor
    cuda: list[Tensor]

    @classmethod
    def capture(cls) -> RandomState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        return cls(torch.get_rng_state(), cuda)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(self.cuda)


def split_features(features: Features, chunk_size: int) -> list[Features]:
    """Split tokenised features along the batch dimension (padding is shared, so embeddings are unchanged)."""
    total = next(iter(features.values())).shape[0]
    return [{k: v[i : i + chunk_size] for k, v in features.items()} for i in range(0, total, chunk_size)]


def gradcache_backward(
    embed_queries: Callable[[Features], Tensor],
    embed_passages: Callable[[Features], Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    queries: Features,
    passages: Features,
    chunk_size: int,
    *,
    backward: Callable[[Tensor], None] = torch.Tensor.backward,
    no_sync: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> Tensor:
    """Accumulate the gradient of `loss_fn(embed(queries), embed(passages))` chunk by chunk; returns the loss.

    `backward` runs the surrogate backward passes (e.g. `accelerator.backward`, which also applies
    gradient-accumulation scaling); `no_sync` is the DDP context that delays the all-reduce.
    """
    q_chunks = split_features(queries, chunk_size)
    p_chunks = split_features(passages, chunk_size)
    work = [(embed_queries, c) for c in q_chunks] + [(embed_passages, c) for c in p_chunks]

    states: list[RandomState] = []
    reps: list[Tensor] = []
    with torch.no_grad():
        for embed, chunk in work:
            states.append(RandomState.capture())
            reps.append(embed(chunk))
    end_state = RandomState.capture()

    leaves = [r.detach().requires_grad_() for r in reps]
    q_reps = torch.cat(leaves[: len(q_chunks)])
    p_reps = torch.cat(leaves[len(q_chunks) :])
    loss = loss_fn(q_reps, p_reps)
    loss.backward()

    for i, ((embed, chunk), state, leaf) in enumerate(zip(work, states, leaves, strict=True)):
        last = i == len(work) - 1
        with contextlib.nullcontext() if last else no_sync():
            state.restore()
            rep = embed(chunk)
            backward(torch.dot(rep.flatten(), leaf.grad.flatten()))
    end_state.restore()
    return loss.detach()
