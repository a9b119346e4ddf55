"""Serving: an OpenAI-compatible embedding and search service with dynamic batching (FastAPI).

`create_app` and the settings load lazily, so `tdro-suite --help` does not import FastAPI and torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdro_suite.serve.app import create_app
    from tdro_suite.serve.settings import ServeSettings, load_serve_settings

__all__ = ["ServeSettings", "create_app", "load_serve_settings"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tdro_suite.serve.app import create_app

        return create_app
    if name in ("ServeSettings", "load_serve_settings"):
        from tdro_suite.serve import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'tdro_suite.serve' has no attribute {name!r}")
