"""Logging for the service: uvicorn configures only its own loggers, so ours get a handler here.

A library module (not the CLI's) because the uvicorn app factory calls it in every worker process.
"""

from __future__ import annotations

import logging


def configure_logging(level: str = "info") -> None:
    """Give the `tdro_suite` loggers one stream handler (once) and the configured level."""
    logger = logging.getLogger("tdro_suite")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
