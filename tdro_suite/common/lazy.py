"""Package attributes that import their module on first use (PEP 562), so importing a package stays cheap.

`tdro-suite --help` reads config modules inside packages whose public classes need torch or faiss
(`tdro_suite.modeling.Encoder`, `tdro_suite.index.DenseIndex`); those load only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: `exports` maps an attribute to the module defining it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
