"""What one optimizer step costs the host, counted (tests/dist_scripts/step_costs.py), and the tokenisation
the tDRO proxy and reference share.

Counts per step on each of 2 gloo processes, with 2 accumulation micro-batches (before → now):
- fine-tuning: tokenizer calls 4 → 4; all_gathers 12 → 4 (queries and passages, no size exchange, no
  passage-key gather: every rank hashes the global batch's texts); host reads in the gathers 12 → 0;
- tDRO: tokenizer calls 12 → 4 (each micro-batch once for both passes and the reference); all_gathers 6 → 3;
  host reads in the gathers 6 → 0.
Length buckets read one count per forward either way (now after agreeing on it across ranks in lockstep).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from test_distributed import torchrun  # puts tests/dist_scripts on the path
from train_data import write_tasks

from tdro_suite.dro.batches import draw_global_batch, load_task_data, local_micro_batches
from tdro_suite.dro.group_weights import GroupWeights
from tdro_suite.dro.step import Lengths, reference_losses, tdro_step
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.modeling.tokens import same_tokenization
from tdro_suite.runtime.module import EncoderModule

ACCUMULATION = 2


@pytest.fixture(scope="module")
def tasks_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("cost-data"), per_task=12)


def step_costs(stage: str, values: dict, out: Path) -> list[list[dict]]:
    torchrun("step_costs.py", stage, json.dumps(values), str(out))
    return [json.loads((out / f"costs-{stage}-rank{r}.json").read_text()) for r in range(2)]


def in_module(counter: dict, module: str) -> int:
    return sum(n for where, n in counter.items() if where.startswith(module + ":"))


@pytest.mark.slow
def test_finetune_step_costs(tiny_encoder_dir: Path, tasks_manifest: Path, tmp_path: Path) -> None:
    values = dict(
        model=str(tiny_encoder_dir), data=[str(tasks_manifest)], max_steps=2, hard_negatives=1, query_max_length=16,
        passage_max_length=16, progress=False, grad_accumulation=ACCUMULATION, per_device_batch_size=4,
        output_dir=str(tmp_path / "run"),
    )
    for steps in step_costs("finetune", values, tmp_path):
        assert len(steps) == 2
        for step in steps:
            assert step["tokenize"] == {"calls": 2 * ACCUMULATION}  # queries and passages, once per micro-batch
            assert step["collectives"] == {
                "distributed:_gather_padded.all_gather": 2 * ACCUMULATION,  # queries, passages; no sizes, no keys
                "distributed:all_reduce_max.all_reduce": 2 * ACCUMULATION,  # the bucket count of each forward
            }
            assert in_module(step["host_reads"], "distributed") == 0
            assert step["host_reads"] == {
                "length_buckets:plan_buckets.__int__": 2 * ACCUMULATION,  # the agreed count, one per forward
                "finetune:step_fn.item": 1,  # the logged loss
            }


@pytest.mark.slow
def test_tdro_step_costs(tiny_encoder_dir: Path, tasks_manifest: Path, tmp_path: Path) -> None:
    values = dict(
        model=str(tiny_encoder_dir), reference=str(tiny_encoder_dir), data=[str(tasks_manifest)], max_steps=2,
        hard_negatives=1, query_max_length=16, passage_max_length=16, progress=False,
        grad_accumulation=ACCUMULATION, global_batch_size=8, output_dir=str(tmp_path / "run"),
    )
    for steps in step_costs("optimize", values, tmp_path):
        assert len(steps) == 2
        for step in steps:
            # once per micro-batch: pass 1, the reference and pass 2 use the same tensors (12 before)
            assert step["tokenize"] == {"calls": 2 * ACCUMULATION}
            # proxy losses, task ids, reference losses, without a size exchange (6 before)
            assert step["collectives"]["distributed:_gather_padded.all_gather"] == 3
            assert in_module(step["host_reads"], "distributed") == 0
            # proxy pass 1 and 2 in lockstep (agreed counts), the reference (its own, outside DDP)
            assert step["collectives"]["distributed:all_reduce_max.all_reduce"] == 4 * ACCUMULATION
            assert step["host_reads"]["length_buckets:plan_buckets.__int__"] == 6 * ACCUMULATION


def test_same_tokenization_is_decided_on_what_the_tokenizers_do(
    tiny_encoder_dir: Path, tiny_decoder_dir: Path, tmp_path: Path
) -> None:
    decoder = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    saved = decoder.save(tmp_path / "saved")  # a fine-tuned copy: its tokenizer file now holds our EOS step ...
    assert (saved / "tokenizer.json").read_bytes() != (tiny_decoder_dir / "tokenizer.json").read_bytes()
    assert same_tokenization(decoder.tokenizer, Encoder.from_pretrained(saved, device="cpu").tokenizer)  # ... alike
    encoder = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    assert same_tokenization(encoder.tokenizer, Encoder.from_pretrained(tiny_encoder_dir, device="cpu").tokenizer)
    assert not same_tokenization(encoder.tokenizer, decoder.tokenizer)
    left = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    left.tokenizer.padding_side = "left"
    assert not same_tokenization(encoder.tokenizer, left.tokenizer)  # same vocabulary, other padding


def _count_tokenize(encoder: Encoder, counts: dict[str, int], name: str) -> None:
    original = encoder.tokenize

    def counting(*args, **kwargs):
        counts[name] += 1
        return original(*args, **kwargs)

    encoder.tokenize = counting  # type: ignore[method-assign]


def test_tdro_step_shares_tokens_only_with_a_reference_that_tokenises_alike(
    tiny_encoder_dir: Path, tiny_decoder_dir: Path, tasks_manifest: Path, one_torch_thread
) -> None:
    from tdro_suite.data.tasks import load_tasks

    tasks = load_task_data(load_tasks([str(tasks_manifest)]), use_instructions=False)
    items = draw_global_batch(tasks, 0, batch_size=6, hard_negatives=1, seed=1)
    micro = local_micro_batches(items, rank=0, world_size=1, accumulation=ACCUMULATION)
    lengths = Lengths(16, 16)
    proxy = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")

    def step(reference: Encoder, shared: bool) -> tuple[object, dict[str, int]]:
        model = copy.deepcopy(proxy)
        counts = {"proxy": 0, "reference": 0}
        _count_tokenize(model, counts, "proxy")
        _count_tokenize(reference, counts, "reference")
        torch.manual_seed(0)
        stats = tdro_step(
            model=EncoderModule(model), proxy=model, reference=reference, micro_batches=micro,
            group_weights=GroupWeights(len(tasks), step_size=0.5), measure="relative", lengths=lengths,
            temperature=0.05, shared_tokens=shared,
        )
        return stats, counts

    same = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    shared, counts = step(same, same_tokenization(proxy.tokenizer, same.tokenizer))  # alike: shared
    assert counts == {"proxy": 2 * ACCUMULATION, "reference": 0}
    separate, counts = step(Encoder.from_pretrained(tiny_encoder_dir, device="cpu"), False)
    assert counts == {"proxy": 2 * ACCUMULATION, "reference": 2 * ACCUMULATION}
    for field in ("weights", "measure", "proxy_loss", "reference_loss"):  # sharing changes no number
        assert torch.equal(getattr(shared, field), getattr(separate, field)), field

    decoder = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")  # another tokenizer: its own tokens
    other, counts = step(decoder, same_tokenization(proxy.tokenizer, decoder.tokenizer))
    assert counts == {"proxy": 2 * ACCUMULATION, "reference": 2 * ACCUMULATION}
    expected = torch.cat([reference_losses(decoder, mb, lengths, 0.05) for mb in micro])
    assert other.overall_reference == pytest.approx(float(expected.double().mean()), rel=1e-6)
