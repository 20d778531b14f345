"""Request bodies: size limit (Content-Length checked up front, streamed bodies counted as they
arrive) and a read deadline (a client that declares a body and sends part of it is answered
408 and disconnected, instead of holding a connection and a worker)."""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.problems import PROBLEM_TYPE


async def _problem(send: Send, status: int, kind: str, title: str, detail: str) -> None:
    body = json.dumps(
        {"type": f"urn:coinflow:problem:{kind}", "title": title, "status": status, "detail": detail}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, limit: int) -> None:
    detail = f"request bodies are limited to {limit} bytes"
    await _problem(send, 413, "body-too-large", "Request body too large", detail)


async def _too_slow(send: Send, timeout: float) -> None:
    detail = f"the request body must arrive within {timeout:g} s"
    await _problem(send, 408, "body-timeout", "Request body not received in time", detail)


class BodyLimitMiddleware:
    """413 problem JSON for bodies over `limit` bytes, declared or streamed (chunked); 408 when
    the whole body has not arrived `timeout` seconds after the request started."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float = 5.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.limit:
                await _too_large(send, self.limit)
                return
        # Read the body here (bounded), then replay it to the app: a chunked body that
        # grows past the limit is refused before the app sees any of it.
        chunks: list[bytes] = []
        size = 0
        more = True
        deadline = time.monotonic() + self.timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                await _too_slow(send, self.timeout)
                return
            if message["type"] != "http.request":
                return  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(send, self.limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
