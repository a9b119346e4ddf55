"""Import a script of eval/experiments/ by file (that folder is no package), as the tests of its experiments do."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "eval" / "experiments"


def load_experiment(name: str) -> ModuleType:
    """eval/experiments/<name>.py as module `name`, registered in sys.modules (dataclasses resolve annotations
    through it, and a script importing a sibling by that name gets this same module)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
