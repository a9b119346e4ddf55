"""Losses against hand-computed values on a 2-query batch (G = 2: positive + one hard negative, τ = 0.5).

q1 = (1, 0), q2 = (0, 1); passages [p1+, p1-, p2+, p2-] = (1,0), (0.6,0.8), (0,1), (0.28,0.96).
Scores/τ: q1 → [2, 1.2, 0, 0.56]; q2 → [0, 1.6, 2, 1.92].
  ℓ1 = −2 + log(e² + e^1.2 + e⁰ + e^0.56)            = 0.5997108
  ℓ2 = −2 + log(e⁰ + e^1.6 + e² + e^1.92)            = 1.0038516   mean 0.8017812
  with p1- masked for q2 (same text as p2+): ℓ2 = −2 + log(e⁰ + e² + e^1.92), mean 0.6608325
  hard negatives only: ℓ1 = −2 + log(e² + e^1.2) = 0.3711007, ℓ2 = −2 + log(e² + e^1.92) = 0.6539470
"""

from __future__ import annotations

import pytest
import torch

from tdro_suite.modeling.losses import InfoNCELoss, hard_negative_infonce, text_keys

Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.28, 0.96]])


def test_infonce_with_in_batch_negatives_matches_hand_computation() -> None:
    loss = InfoNCELoss(temperature=0.5)(Q, P)
    assert loss.item() == pytest.approx(0.8017812, abs=1e-6)


def test_passage_identical_to_the_positive_is_masked_out() -> None:
    keys = torch.tensor([10, 20, 20, 30])  # p1- has the same text as p2+
    loss = InfoNCELoss(temperature=0.5)(Q, P, keys)
    assert loss.item() == pytest.approx(0.6608325, abs=1e-6)


def test_hard_negative_only_mode_returns_per_example_losses() -> None:
    per_example = hard_negative_infonce(Q, P, temperature=0.5)
    assert per_example.shape == (2,)
    assert per_example.tolist() == pytest.approx([0.3711007, 0.6539470], abs=1e-6)
    # InfoNCELoss without in-batch negatives is the mean of the same per-example losses
    no_in_batch = InfoNCELoss(0.5, in_batch_negatives=False)(Q, P)
    assert no_in_batch.item() == pytest.approx(per_example.mean().item(), abs=1e-6)


def test_gradient_flows_to_queries_and_passages() -> None:
    q, p = Q.clone().requires_grad_(), P.clone().requires_grad_()
    InfoNCELoss(temperature=0.5)(q, p).backward()
    assert q.grad is not None and p.grad is not None
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_text_keys_are_stable_and_equal_for_equal_texts() -> None:
    keys = text_keys(["a passage", "another", "a passage"])
    assert keys.dtype == torch.long
    assert keys[0] == keys[2] and keys[0] != keys[1]
    assert keys.tolist() == text_keys(["a passage", "another", "a passage"]).tolist()


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="multiple"):
        InfoNCELoss()(Q, P[:3])
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0)
