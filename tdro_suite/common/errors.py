"""User-facing errors.

Anything a user can cause (a bad file, an unknown model, a wrong config value) raises a
`TdroError` subclass with a one-paragraph message; the CLI prints it without a traceback and
exits non-zero. Programming errors stay ordinary exceptions so they keep their traceback.
"""

from __future__ import annotations


class TdroError(Exception):
    """Base class for errors whose message is meant for the user, not the developer."""

    exit_code = 2


class ConfigError(TdroError):
    """A config file or a command-line override is invalid (names the file and the key)."""


class ModelNotFoundError(TdroError):
    """A model name is neither a local folder, a bundled alias, nor reachable on the hub."""


class DataError(TdroError):
    """Input data is malformed (names the file, the line and the field)."""
