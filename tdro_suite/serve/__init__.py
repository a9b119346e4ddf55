"""Serving: an OpenAI-compatible embedding and search service with dynamic batching (FastAPI)."""

from tdro_suite.serve.app import create_app
from tdro_suite.serve.settings import ServeSettings, load_serve_settings

__all__ = ["ServeSettings", "create_app", "load_serve_settings"]
