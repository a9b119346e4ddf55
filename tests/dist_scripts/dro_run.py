"""Run `run_optimize` from a JSON config (argv[1]); launched by torchrun in test_dro_distributed.py."""

from __future__ import annotations

import json
import sys

import torch
from rich.console import Console

from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.optimize import run_optimize

if __name__ == "__main__":
    from clean_exit import exit_now  # beside this script, which Python puts first on sys.path

    torch.set_num_threads(1)
    with open(sys.argv[1], encoding="utf-8") as fh:
        config = OptimizeConfig(**json.load(fh))
    run_optimize(config, console=Console(quiet=True))
    exit_now()
