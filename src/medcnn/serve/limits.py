"""An ASGI guard on request bodies: an upload over the size limit is refused with 413 before a byte of
it is read or stored.

The limit is checked on the declared Content-Length (which the HTTP server enforces: it never delivers
more body than declared); a body without one (chunked transfer) is refused with 411.
"""
from __future__ import annotations

import json

BODY_METHODS = ("POST", "PUT", "PATCH")


class UploadLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    @staticmethod
    async def _refuse(send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is None or not declared.isdigit():
            return await self._refuse(send, 411, "a Content-Length header is required for uploads")
        if int(declared) > self.max_bytes:
            return await self._refuse(send, 413, f"upload too large ({int(declared) / 2**20:.1f} MB): the limit is "
                                                 f"{self.max_bytes / 2**20:.0f} MB (medcnn serve --max-upload-mb)")
        return await self.app(scope, receive, send)
