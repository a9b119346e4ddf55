"""tDRO's reference stays frozen: after optimizer steps its weights are unchanged, it holds no gradient,
and it is neither among the optimizer's parameters nor inside the accelerate-prepared (DDP) model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from train_data import write_tasks

from tdro_suite.dro import optimize as optimize_module
from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.modeling.encoder import Encoder
from tdro_suite.runtime.session import TrainingSession

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_reference_is_frozen_and_outside_the_trained_model(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    load = optimize_module.load_frozen_encoder

    def recording_load(*args, **kwargs) -> Encoder:
        reference = load(*args, **kwargs)
        seen["reference"] = reference
        seen["before"] = {name: p.detach().clone() for name, p in reference.state_dict().items()}
        return reference

    class RecordingSession(TrainingSession):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            seen["session"] = self

    monkeypatch.setattr(optimize_module, "load_frozen_encoder", recording_load)
    monkeypatch.setattr(optimize_module, "TrainingSession", RecordingSession)
    data = write_tasks(tmp_path / "data", per_task=12)
    cfg = OptimizeConfig(
        model=str(tiny_encoder_dir), reference=str(tiny_encoder_dir), data=[str(data)], global_batch_size=6,
        hard_negatives=1, query_max_length=16, passage_max_length=16, learning_rate=1e-2, max_steps=3,
        grad_accumulation=2, output_dir=str(tmp_path / "run"), progress=False,
    )
    optimize_module.run_optimize(cfg, console=Console(quiet=True))

    reference, session = seen["reference"], seen["session"]
    assert isinstance(reference, Encoder) and isinstance(session, RecordingSession)
    assert not reference.training
    params = list(reference.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)
    for name, value in reference.state_dict().items():
        assert torch.equal(value, seen["before"][name]), name
    ref_ids = {id(p) for p in params}
    optimized = {id(p) for group in session.optimizer.param_groups for p in group["params"]}
    assert optimized and not optimized & ref_ids
    prepared = {id(p) for p in session.model.parameters()}
    assert not prepared & ref_ids
    assert not any(module is reference for module in session.model.modules())
    # the proxy did train (same starting weights as the reference), so the comparison has teeth
    proxy = session.accelerator.unwrap_model(session.model).encoder
    assert any(not torch.equal(p, seen["before"][n]) for n, p in proxy.state_dict().items())
