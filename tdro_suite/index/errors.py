"""Errors a user can cause with an index: a damaged folder, or vectors that do not fit it."""

from __future__ import annotations

from tdro_suite.common.errors import DataError, TdroError


class IndexFormatError(DataError):
    """An index folder is missing a file or holds inconsistent files (names the folder and the file)."""


class IndexMismatchError(TdroError):
    """Queries or documents do not fit the index: another dimension, or another model than it was built with."""
