"""Two CPU processes under torchrun (gloo) against one process on the concatenated batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parent / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))

from toy_problem import make_batch, make_model  # noqa: E402

from tdro_suite.modeling.distributed import all_gather_nograd, all_gather_with_grad  # noqa: E402

pytestmark = pytest.mark.slow


def torchrun(script: str, *args: str, nproc: int = 2) -> None:
    """Run a script under torchrun with `nproc` CPU processes; fail the test with its output on error."""
    torchrun_bin = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    cmd = [str(torchrun_bin), "--standalone", f"--nproc-per-node={nproc}", str(SCRIPTS / script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_gather_is_identity_without_a_process_group() -> None:
    t = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(t) is t
    assert all_gather_nograd(t) is t


def test_two_ranks_give_the_loss_and_gradients_of_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    torchrun("loss_grads.py", str(tmp_path))
    got = torch.load(tmp_path / "loss_grads.pt")
    model = make_model()
    q_in, p_in, keys, _, _ = make_batch(2)
    loss = model(q_in, p_in, keys)
    loss.backward()
    # every rank logs the same global loss, equal to the 1-process loss
    assert got["losses"] == pytest.approx([loss.item()] * 2, abs=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], param.grad, atol=1e-6, rtol=1e-5)
    # without the cross-rank duplicate masked, the loss would differ: the check has teeth
    unmasked = make_model()(q_in, p_in, torch.arange(len(keys)))
    assert abs(unmasked.item() - loss.item()) > 1e-4
