"""Optional Bearer API key, checked as a FastAPI dependency on every `/v1/*` route."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from tdro_suite.serve.errors import ApiError

_bearer = HTTPBearer(auto_error=False, description="The server's API key (only when one is configured).")


def require_api_key(api_key: SecretStr | None) -> Callable[[HTTPAuthorizationCredentials | None], None]:
    """A dependency that lets everything through without a key, else demands `Authorization: Bearer <key>`."""
    expected = api_key.get_secret_value().encode("utf-8") if api_key else None

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if expected is None:
            return
        given = credentials.credentials.encode("utf-8") if credentials else b""
        # compare_digest takes time independent of where the strings differ: no timing oracle.
        if not (credentials and hmac.compare_digest(given, expected)):
            raise ApiError(
                401,
                "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
