"""From sampled examples to model inputs: prompts, one positive + hard negatives per query, tokenisation.

Which positive and which negatives an example contributes is drawn for the WHOLE global batch with
a generator seeded by (seed, step), and each rank then takes its slice: the texts do not depend on
the number of processes, which keeps P-process and 1-process runs identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tdro_suite.data.types import Passage, TaskInfo, TrainExample
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.modeling.losses import text_keys
from tdro_suite.modeling.prompts import TaskPrompts, prompt_rng
from tdro_suite.train.sampler import GlobalBatch


@dataclass
class TextGroup:
    """One query with its passages `[positive, hard negatives...]`, prompts already applied."""

    query: str
    passages: list[str]


@dataclass
class TrainBatch:
    """Tokenised model inputs of one micro-batch on one rank."""

    queries: dict[str, torch.Tensor]
    passages: dict[str, torch.Tensor]
    passage_keys: torch.Tensor
    n_queries: int

    def to(self, device: torch.device) -> TrainBatch:
        return TrainBatch(
            {k: v.to(device) for k, v in self.queries.items()},
            {k: v.to(device) for k, v in self.passages.items()},
            self.passage_keys.to(device),
            self.n_queries,
        )


def _nth_other(n: int, own: Sequence[int]) -> int:
    """The row of the n-th example (0-based) among those whose rows are not in `own` (ascending)."""
    for row in own:
        if row > n:
            break
        n += 1
    return n


def pick_passages(
    example: TrainExample, hard_negatives: int, rng: np.random.Generator, fallback: Sequence[TrainExample]
) -> list[Passage]:
    """`[positive, negatives...]`: a random positive; negatives without replacement when there are enough,
    with replacement when too few; an example with none borrows positives of other examples of its task."""
    chosen = [example.positives[int(rng.integers(len(example.positives)))]]
    if hard_negatives == 0:
        return chosen
    pool = list(example.negatives)
    if not pool:
        rows_of = getattr(fallback, "rows_of", None)  # Arrow-backed: the same picks without a scan per query
        if rows_of is not None:
            own = rows_of(example.query_id).tolist()
            others = len(fallback) - len(own)
            picks = rng.integers(others or len(fallback), size=hard_negatives).tolist()
            return chosen + [fallback[_nth_other(p, own) if others else p].positives[0] for p in picks]
        others = [ex for ex in fallback if ex.query_id != example.query_id] or list(fallback)
        picks = rng.integers(len(others), size=hard_negatives)
        return chosen + [others[int(i)].positives[0] for i in picks]
    if len(pool) >= hard_negatives:
        picks = rng.choice(len(pool), size=hard_negatives, replace=False)
    else:
        picks = rng.integers(len(pool), size=hard_negatives)
    return chosen + [pool[int(i)] for i in picks]


def global_text_groups(
    batch: GlobalBatch,
    examples: Sequence[TrainExample],
    task: TaskInfo,
    hard_negatives: int,
    seed: int,
    use_instructions: bool = True,
    sample_instructions: bool = False,
) -> list[TextGroup]:
    """The texts of every query of the global batch, in global order (every rank computes the same list)."""
    rng = np.random.default_rng([seed, 2, batch.step])
    prompts = TaskPrompts.of(task.instruction, task.instructions, task.symmetric,
                             use_instructions=use_instructions, sample=sample_instructions)
    draws = prompt_rng(seed, batch.step)
    groups = []
    for index in batch.indices:
        example = examples[index]
        q_prefix, p_prefix = prompts.draw(draws)
        passages = pick_passages(example, hard_negatives, rng, examples)
        groups.append(TextGroup(q_prefix + example.query, [p_prefix + p.full_text() for p in passages]))
    return groups


def tokenize_groups(
    encoder: Encoder,
    groups: Sequence[TextGroup],
    query_max_length: int,
    passage_max_length: int,
    *,
    key_groups: Sequence[TextGroup] | None = None,
) -> TrainBatch:
    """Tokenise a slice of groups; passage keys hash the passage text (prompt included).

    The keys are those of `key_groups` when given: the groups of every rank's slice, in rank order, for
    a loss with cross-device negatives. Every rank has the global batch's texts, so it hashes them
    itself instead of gathering the other ranks' keys.
    """
    passages = [p for g in groups for p in g.passages]
    key_passages = passages if key_groups is None else [p for g in key_groups for p in g.passages]
    return TrainBatch(
        queries=encoder.tokenize([g.query for g in groups], max_length=query_max_length),
        passages=encoder.tokenize(passages, max_length=passage_max_length),
        passage_keys=text_keys(key_passages),
        n_queries=len(groups),
    )
