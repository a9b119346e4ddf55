"""Refuse request bodies over a byte limit with 413, before they are buffered or parsed.

A declared `Content-Length` over the limit is refused at once; a chunked body is counted as it
arrives and refused as soon as it crosses the limit, so a client cannot stream an endless body.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tdro_suite.serve.errors import error_body


class BodyTooLarge(HTTPException):
    """Raised inside `receive` when a streamed body crosses the limit.

    An `HTTPException`, because FastAPI re-raises those from body parsing (any other exception there
    becomes a 400), so the app's handler answers it with 413.
    """


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _text(self) -> str:
        return (
            f"Request body is larger than the limit max_body_bytes={self.max_bytes} bytes; "
            "split the input over several requests."
        )

    def _message(self) -> bytes:
        return json.dumps(error_body(413, self._text(), param="body", code="max_body_bytes")).encode()

    async def _refuse(self, send: Send) -> None:
        body = self._message()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(413, self._text())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)
