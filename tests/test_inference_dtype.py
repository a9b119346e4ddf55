"""The inference dtype: bf16 where the CPU multiplies it natively, and a quality guard that bf16 keeps the
embeddings (cosine >= 0.999 to fp32) and the bundled benchmarks' metrics (within 0.1 point) of fp32.

The quality tests force bf16 whatever the CPU: emulated bf16 is slow but rounds the same way, so they
hold on every machine; speed is measured in eval/bench/encode_bench.py, never here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdro_suite.common import device as device_module
from tdro_suite.common.device import choose_dtype, parse_dtype

BUNDLED = ("bundled:beir", "bundled:miracl", "bundled:mkqa")
SAMPLE = [
    "What is the capital of France?",
    "Who wrote the book of Psalms and when was it collected?",
    "def fork(): Fork and make the child a session leader with a controlling terminal.",
    "A small domesticated carnivorous mammal with soft fur, a short snout and retractable claws.",
    "¿Cuál es la montaña más alta de España?",
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.",
    "量子计算机如何利用叠加态进行计算？",
    "os.path.join(a, *p): Join two or more pathname components, inserting '/' as needed. " * 12,
]


@pytest.mark.parametrize(("flag", "expected"), [("avx512_bf16", torch.bfloat16), ("amx_bf16", torch.bfloat16),
                                                 (None, torch.float32)])
def test_cpu_default_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, flag: str | None,
                                         expected: torch.dtype) -> None:
    monkeypatch.setattr(device_module, "cpu_bf16_flag", lambda: flag)
    dtype, why = choose_dtype(torch.device("cpu"))
    assert dtype == expected
    assert (flag or "without") in why


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_default_is_half_precision(monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert choose_dtype(torch.device("cuda"))[0] == expected


def test_dtype_option_overrides_and_names_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "cpu_bf16_flag", lambda: "avx512_bf16")
    cpu = torch.device("cpu")
    assert parse_dtype("auto", cpu) == parse_dtype(None, cpu) == torch.bfloat16
    assert parse_dtype("float32", cpu) == torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        parse_dtype("int4", cpu)


def test_env_reports_the_choice_and_why() -> None:
    from tdro_suite.common.environment import environment_report

    report = environment_report()
    assert "--dtype overrides" in str(report["default dtype"])
    assert str(report["default dtype"]).startswith(str(choose_dtype(torch.device("cpu"))[0]).replace("torch.", ""))


@pytest.fixture(scope="module")
def minilm_fp32_bf16():
    from tdro_suite.modeling import Encoder

    return (Encoder.from_pretrained("minilm", device="cpu", dtype="float32"),
            Encoder.from_pretrained("minilm", device="cpu", dtype="bfloat16"))


@pytest.mark.slow
def test_bf16_embeddings_are_fp32_embeddings(minilm_fp32_bf16) -> None:
    fp32, bf16 = minilm_fp32_bf16
    a, b = fp32.encode(SAMPLE, batch_size=4), bf16.encode(SAMPLE, batch_size=4)
    assert next(bf16.parameters()).dtype == torch.bfloat16
    cosines = np.sum(a * b, axis=1)  # both L2-normalised
    assert cosines.min() >= 0.999, cosines


@pytest.mark.slow
def test_bf16_keeps_the_bundled_benchmark_metrics(minilm_fp32_bf16, tmp_path) -> None:
    from tdro_suite.evaluation.harness import evaluate

    fp32, bf16 = minilm_fp32_bf16
    for bench in BUNDLED:
        scores = []
        for encoder in (fp32, bf16):
            results = evaluate(encoder, bench, use_cache=False, show_progress=False, batch_size=64)
            scores.append(100 * results["average"][results["main_metric"]])
        assert abs(scores[0] - scores[1]) <= 0.1, (bench, scores)


@pytest.mark.gpu
def test_cuda_encode_in_half_precision_from_pinned_memory(request, monkeypatch) -> None:
    """On a GPU: the default dtype is bf16 (fp16 without it), batches reach the device from pinned memory,
    and the embeddings keep the fp32 CPU ones (cosine >= 0.999)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from tdro_suite.modeling import Encoder

    minilm_fp32_bf16 = request.getfixturevalue("minilm_fp32_bf16")  # only once a GPU is there: two loads

    encoder = Encoder.from_pretrained("minilm", device="cuda")
    assert next(encoder.parameters()).dtype == choose_dtype(torch.device("cuda"))[0]
    pinned: list[bool] = []
    original = torch.Tensor.pin_memory

    def spy(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = original(tensor, *args, **kwargs)
        pinned.append(out.is_pinned())
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    got = encoder.encode(SAMPLE, batch_size=4)
    assert pinned and all(pinned)
    expected = minilm_fp32_bf16[0].encode(SAMPLE, batch_size=4)
    assert np.sum(got * expected, axis=1).min() >= 0.999
