"""Launched by tests/test_distributed.py under torchrun (gloo, CPU): InfoNCE with cross-device negatives.

Each rank embeds its own slice of a fixed global batch with a DDP-wrapped toy encoder, computes the
loss and backpropagates; rank 0 saves the logged loss and the DDP-averaged gradients so the test can
compare them with one process on the concatenated batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_exit import exit_now
from toy_problem import make_batch, make_model

from tdro_suite.modeling.distributed import world_size


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(make_model())
    q_in, p_in, keys, per_rank, group = make_batch(size)
    q_slice = q_in[rank * per_rank : (rank + 1) * per_rank]
    p_slice = p_in[rank * per_rank * group : (rank + 1) * per_rank * group]
    k_slice = keys[rank * per_rank * group : (rank + 1) * per_rank * group]
    loss = model(q_slice, p_slice, k_slice)
    loss.backward()
    logged = loss.detach() / world_size()
    losses = [torch.zeros(()) for _ in range(size)]
    dist.all_gather(losses, logged)
    if rank == 0:
        grads = {name: p.grad.clone() for name, p in model.module.named_parameters()}
        torch.save({"losses": [x.item() for x in losses], "grads": grads}, out / "loss_grads.pt")
    dist.barrier()  # no rank tears gloo down while another is still talking to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    exit_now()
