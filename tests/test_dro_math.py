"""Group measures and the group-weight update, checked against numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.group_weights import GroupWeights
from tdro_suite.dro.measures import SmallShare, group_measure

PROXY = torch.tensor([2.0, 1.0, 0.5, 3.0], dtype=torch.float64)
REFERENCE = torch.tensor([1.0, 2.0, 0.001, 1.0], dtype=torch.float64)
TASKS = torch.tensor([0, 0, 1, 2])  # task 3 has no example in this batch


def _floor(phi: float) -> SmallShare:
    return SmallShare("floor", floor=phi)


def test_relative_measure_by_hand_with_floor() -> None:
    # Σℓʳ = 4.001; shares 1/4.001, 2/4.001, 0.001/4.001 (< floor 0.1/4 = 0.025 → floored), 1/4.001.
    # x = [2·4.001, 1·4.001/2, 0.5/0.025, 3·4.001] = [8.002, 2.0005, 20, 12.003]
    g = group_measure("relative", PROXY, REFERENCE, TASKS, 4, small_share=_floor(0.1))
    assert g.tolist() == pytest.approx([(8.002 + 2.0005) / 2, 20.0, 12.003, 0.0], rel=1e-12)


def test_relative_measure_without_floor_hit_is_the_plain_ratio() -> None:
    # a floor of 1e-6 of the mean share never binds here: x = ℓᵖ·Σℓʳ/ℓʳ; 0.5·4.001/0.001 = 2000.5
    g = group_measure("relative", PROXY, REFERENCE, TASKS, 4, small_share=_floor(1e-6))
    assert g.tolist() == pytest.approx([5.00125, 2000.5, 12.003, 0.0], rel=1e-12)


def test_relative_measure_all_zero_reference_uses_the_floor_everywhere() -> None:
    g = group_measure("relative", PROXY, torch.zeros(4), TASKS, 4, small_share=_floor(0.1))
    # every share is the floor 0.025, so x = ℓᵖ / 0.025 = 40·ℓᵖ
    assert g.tolist() == pytest.approx([40 * 1.5, 40 * 0.5, 40 * 3.0, 0.0])


def test_relative_measure_reference_rule_by_hand() -> None:
    # The same shares; the third, 0.001/4.001 ≈ 2.5e-4, is above the threshold 1e-4, so the plain ratio:
    # x = ℓᵖ·Σℓʳ/ℓʳ = [8.002, 2.0005, 2000.5, 12.003] (the floor rule gives this example 20).
    g = group_measure("relative", PROXY, REFERENCE, TASKS, 4)
    assert g.tolist() == pytest.approx([5.00125, 2000.5, 12.003, 0.0], rel=1e-12)
    # a threshold of 1e-3 catches it: its share becomes 1 and x = ℓᵖ = 0.5
    g = group_measure("relative", PROXY, REFERENCE, TASKS, 4, small_share=SmallShare(threshold=1e-3))
    assert g.tolist() == pytest.approx([5.00125, 0.5, 12.003, 0.0], rel=1e-12)


def test_relative_measure_all_zero_reference_gives_the_raw_proxy_loss() -> None:
    # the public code's L1 normalisation divides 0 by eps = 1e-12: every share is 0 < 1e-4 → 1, so x = ℓᵖ
    g = group_measure("relative", PROXY, torch.zeros(4), TASKS, 4)
    assert g.tolist() == pytest.approx([1.5, 0.5, 3.0, 0.0])


def test_small_share_rules_on_a_trivial_task() -> None:
    """One task the reference finds trivial, pinned under both rules (issue 13).

    N = 512 examples: task A = 256 examples with ℓʳ = 1e-3 and ℓᵖ = 3, task B = 256 with ℓʳ = ℓᵖ = 1.
    Σℓʳ = 256·1e-3 + 256·1 = 256.256, so A's share is 1e-3/256.256 ≈ 3.9e-6 and B's 1/256.256 ≈ 3.9e-3.
    - B under both rules: the share is above the threshold 1e-4 and above the floor 0.1/512 ≈ 1.95e-4,
      so x = 1 · 256.256 = 256.256 and g_B = 256.256.
    - A, floor rule: 3.9e-6 < 0.1/512, so the share becomes 0.1/512 and x = 3 · 512/0.1 = 15360 = g_A:
      the task only the reference has solved gets by far the largest measure.
    - A, reference rule: 3.9e-6 < 1e-4, so the share becomes 1 and x = 3/1 = 3 = g_A: the example adds
      its raw proxy loss, ~85× less than B's.
    """
    n = 256
    f64 = torch.float64
    reference = torch.cat([torch.full((n,), 1e-3, dtype=f64), torch.ones(n, dtype=f64)])
    proxy = torch.cat([torch.full((n,), 3.0, dtype=f64), torch.ones(n, dtype=f64)])
    tasks = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    floor = group_measure("relative", proxy, reference, tasks, 2, small_share=SmallShare("floor", floor=0.1))
    assert floor.tolist() == pytest.approx([15360.0, 256.256], rel=1e-12)
    ref_rule = group_measure("relative", proxy, reference, tasks, 2, small_share=SmallShare("reference", 1e-4))
    assert ref_rule.tolist() == pytest.approx([3.0, 256.256], rel=1e-12)
    assert group_measure("relative", proxy, reference, tasks, 2).tolist() == ref_rule.tolist()  # the default


def test_small_share_rule_defaults_follow_the_config() -> None:
    cfg = OptimizeConfig(measure="loss")
    assert (cfg.relative_small_share, cfg.relative_threshold, cfg.relative_floor) == ("reference", 1e-4, 0.1)
    assert SmallShare() == SmallShare(cfg.relative_small_share, cfg.relative_threshold, cfg.relative_floor)
    with pytest.raises(ValueError, match="small-share rule"):
        SmallShare("clip")  # type: ignore[arg-type]


def test_relative_measure_is_never_negative() -> None:
    g = group_measure("relative", torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0]), torch.tensor([0, 1]), 2)
    assert g.tolist() == [0.0, 2.0]


def test_loss_and_excess_measures_by_hand() -> None:
    assert group_measure("loss", PROXY, None, TASKS, 4).tolist() == pytest.approx([1.5, 0.5, 3.0, 0.0])
    # max(ℓᵖ − ℓʳ, 0) = [1.0, 0.0, 0.499, 2.0]
    assert group_measure("excess", PROXY, REFERENCE, TASKS, 4).tolist() == pytest.approx([0.5, 0.499, 2.0, 0.0])


def test_measure_does_not_depend_on_example_order() -> None:
    perm = torch.tensor([3, 1, 0, 2])
    for name in ("relative", "loss", "excess"):
        a = group_measure(name, PROXY, REFERENCE, TASKS, 4)
        b = group_measure(name, PROXY[perm], REFERENCE[perm], TASKS[perm], 4)
        assert torch.allclose(a, b, rtol=1e-14, atol=0)


def test_measure_rejects_bad_names_and_missing_reference() -> None:
    with pytest.raises(ValueError, match="unknown group measure"):
        group_measure("bogus", PROXY, REFERENCE, TASKS, 4)
    with pytest.raises(ValueError, match="needs reference"):
        group_measure("relative", PROXY, None, TASKS, 4)


def _softmax(xs: list[float]) -> list[float]:
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_update_clips_to_unit_norm_then_ascends() -> None:
    gw = GroupWeights(3, step_size=0.5, max_norm=1.0, ema_decay=0.5)
    alpha = gw.update(torch.tensor([3.0, 4.0, 0.0]))  # ‖g‖ = 5 → g = [0.6, 0.8, 0]
    expected = _softmax([math.log(1 / 3) + 0.5 * 0.6, math.log(1 / 3) + 0.5 * 0.8, math.log(1 / 3)])
    assert alpha.tolist() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx([0.351372, 0.388325, 0.260303], abs=1e-6)
    assert gw.mean.tolist() == pytest.approx(expected)
    assert gw.ema.tolist() == pytest.approx([0.5 / 3 + 0.5 * e for e in expected])


def test_update_below_the_norm_is_not_clipped_and_zero_measure_keeps_weights() -> None:
    gw = GroupWeights(2, step_size=1.0, max_norm=1.0)
    alpha = gw.update([0.3, 0.0])
    assert alpha.tolist() == pytest.approx(_softmax([0.3, 0.0]))
    assert gw.update([0.0, 0.0]).tolist() == pytest.approx(alpha.tolist())
    unclipped = GroupWeights(2, step_size=1.0, max_norm=None)
    assert unclipped.update([3.0, 0.0]).tolist() == pytest.approx(_softmax([3.0, 0.0]))


def test_smoothing_mixes_with_uniform_and_feeds_the_next_step() -> None:
    gw = GroupWeights(2, step_size=1.0, max_norm=1.0, smoothing=0.2, ema_decay=0.0)
    first = [0.8 * a + 0.1 for a in _softmax([1.0, 0.0])]
    assert gw.update([1.0, 0.0]).tolist() == pytest.approx(first)
    second = [0.8 * a + 0.1 for a in _softmax([math.log(first[0]) + 1.0, math.log(first[1])])]
    assert gw.update([2.0, 0.0]).tolist() == pytest.approx(second)  # clipped to [1, 0]
    assert gw.mean.tolist() == pytest.approx([(f + s) / 2 for f, s in zip(first, second, strict=True)])
    assert gw.ema.tolist() == pytest.approx(second)  # decay 0: the EMA is the last α


def test_initial_weights_and_state_round_trip() -> None:
    gw = GroupWeights(3, step_size=0.1, initial=[2.0, 1.0, 1.0])
    assert gw.weights.tolist() == pytest.approx([0.5, 0.25, 0.25])
    gw.update([1.0, 0.0, 0.5])
    clone = GroupWeights(3, step_size=0.1)
    clone.load_state_dict(gw.state_dict())
    assert torch.equal(clone.update([0.2, 0.1, 0.0]), gw.update([0.2, 0.1, 0.0]))
    assert torch.equal(clone.mean, gw.mean) and torch.equal(clone.ema, gw.ema)


def test_update_rejects_bad_input() -> None:
    gw = GroupWeights(2)
    with pytest.raises(ValueError, match="2 tasks"):
        gw.update([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="not finite"):
        gw.update([math.nan, 0.0])
    with pytest.raises(ValueError, match="positive"):
        GroupWeights(2, initial=[1.0, 0.0])
