"""Serving: an OpenAI-compatible embedding and search service with dynamic batching (FastAPI).

`create_app` and the settings load on first use, so `tdro-suite --help` does not import FastAPI and torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tdro_suite.common.lazy import lazy_exports

if TYPE_CHECKING:
    from tdro_suite.serve.app import create_app
    from tdro_suite.serve.settings import ServeSettings, load_serve_settings

__all__ = ["ServeSettings", "create_app", "load_serve_settings"]
__getattr__ = lazy_exports(
    __name__,
    {
        "create_app": "tdro_suite.serve.app",
        "ServeSettings": "tdro_suite.serve.settings",
        "load_serve_settings": "tdro_suite.serve.settings",
    },
)
