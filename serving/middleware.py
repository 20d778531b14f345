"""Request bodies: size limit (Content-Length checked up front, streamed bodies counted as they
arrive) and a read deadline (a client that declares a body and sends part of it is answered
408 and disconnected, instead of holding a connection and a worker); a per-client rate limit
(429 with Retry-After)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.problems import PROBLEM_TYPE, problem_bytes


async def _problem(
    send: Send,
    status: int,
    kind: str,
    title: str,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] = ((b"connection", b"close"),),
) -> None:
    body = problem_bytes(status, kind, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
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


class _TooLarge(Exception):
    """A body grew past the limit while it was read."""


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
        # grows past the limit is refused before the app sees any of it. One timer for the
        # whole body (asyncio.wait_for per message would start a task for each).
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._read(receive)
        except TimeoutError:
            await _too_slow(send, self.timeout)
            return
        except _TooLarge:
            await _too_large(send, self.limit)
            return
        if body is None:
            return  # the client went away: nothing to answer
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body (None: the client disconnected); _TooLarge past the limit."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


class RateLimitMiddleware:
    """A token bucket per client address: `per_s` requests a second, bursts of `burst`; past it
    429 problem JSON with Retry-After (whole seconds until a request would pass). Probes and
    scrapes (`exempt` paths) are never counted; at most `clients` buckets are kept (the least
    recently seen is dropped: a dropped client starts again with a full bucket)."""

    def __init__(
        self,
        app: ASGIApp,
        per_s: float,
        burst: int,
        exempt: frozenset[str] = frozenset({"/health", "/ready", "/metrics"}),
        clients: int = 10_000,
    ) -> None:
        self.app = app
        self.per_s, self.burst = per_s, burst
        self.exempt, self.clients = exempt, clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def wait_s(self, client: str, now: float) -> float:
        """Take a token for `client`: 0 when the request may pass, else seconds to wait."""
        tokens, at = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_s)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.per_s
        self.buckets[client] = (tokens, now)  # most recently seen last
        if len(self.buckets) > self.clients:
            self.buckets.popitem(last=False)
        return wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.wait_s(client[0] if client else "unknown", time.monotonic())
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        detail = (
            f"this client is limited to {self.per_s:g} requests a second (bursts of "
            f"{self.burst}); retry in {retry} s"
        )
        await _problem(
            send,
            429,
            "rate-limited",
            "Too many requests",
            detail,
            ((b"retry-after", str(retry).encode()),),
        )
