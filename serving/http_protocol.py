"""uvicorn's httptools protocol with what it lacks: bounded headers, a header-read deadline and a
connection cap (`coinflow serve` runs it; limits from ConnectionSettings).

httptools buffers a header block of any size and waits for it forever: four clients sending
100 MB of unfinished headers took the API from 0.5 to 0.9 GB. Here a request whose line and
headers pass `coinflow_max_header_bytes` or `coinflow_max_headers` is answered 431, one whose
headers are not complete `coinflow_header_timeout_s` after its first byte (or after the
connection opened) 408, and a connection past `coinflow_max_connections` 503; each is closed.

This subclasses uvicorn's HttpToolsProtocol and overrides its parser callbacks; the raw-socket
tests (tests/serving/test_http_limits.py) fail loudly if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.problems import PROBLEM_TYPE, problem_bytes
from serving.settings import ConnectionSettings

# After a refusal the server stops writing but reads (and drops) for this long before closing:
# closing with unread bytes would reset the connection, and the client lose the answer.
LINGER_S = 1.0
_REFUSALS = {
    408: ("header-timeout", "Request headers not received in time"),
    431: ("headers-too-large", "Request header fields too large"),
    503: ("too-many-connections", "Too many connections"),
}


def refusal(status: int, detail: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection."""
    slug, title = _REFUSALS[status]
    body = problem_bytes(status, slug, title, detail)
    head = [
        f"HTTP/1.1 {status} {title}",
        f"content-type: {PROBLEM_TYPE}",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _TooManyHeaders(Exception):
    """Raised inside the parser callback; httptools wraps it in HttpParserCallbackError."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that bounds the header block, times its arrival and caps connections."""

    limits: ClassVar[ConnectionSettings | None] = None  # read from the env on first use

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = ConnectionSettings()
        self.bounds: ConnectionSettings = cls.limits
        self.in_head = False  # a request has begun and its headers are not complete yet
        self.head_bytes = 0
        self.header_count = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused: bytes | None = None  # the answer to send instead of a 400
        self.draining = False  # refused: what still arrives is dropped unread
        self.linger: asyncio.TimerHandle | None = None

    # --- connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self.bounds.coinflow_max_connections
        if len(self.connections) > cap:
            detail = f"the server holds its limit of {cap} connections; retry shortly"
            self.refuse(refusal(503, detail, retry_after=1))
            return
        self.arm_head_timer()  # a client that connects and sends nothing is timed out too

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_timer()
        if self.linger is not None:
            self.linger.cancel()
        super().connection_lost(exc)

    def refuse(self, answer: bytes) -> None:
        """Send `answer`, end our side, drop whatever still arrives and close after LINGER_S:
        nothing more of this connection is parsed or buffered."""
        self.cancel_head_timer()
        self.in_head = False
        if self.draining or self.transport.is_closing():
            return
        self.draining = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    # --- the header deadline ------------------------------------------------------------
    def arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(
                self.bounds.coinflow_header_timeout_s, self.head_timed_out
            )

    def cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        timeout = self.bounds.coinflow_header_timeout_s
        self.refuse(refusal(408, f"the request headers must arrive within {timeout:g} s"))

    # --- the header block ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        super().data_received(data)
        if self.in_head and not self.draining and not self.transport.is_closing():
            # Counted after parsing: a chunk that completes the headers may carry body bytes
            # too. So at most one read (256 KiB) past the limit is ever buffered.
            self.head_bytes += len(data)
            limit = self.bounds.coinflow_max_header_bytes
            if self.head_bytes > limit:
                detail = f"the request line and headers are limited to {limit} bytes"
                self.refuse(refusal(431, detail))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_bytes, self.header_count = True, 0, 0
        self.arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        limit = self.bounds.coinflow_max_headers
        if self.header_count > limit:
            self.refused = refusal(431, f"a request may carry at most {limit} header fields")
            raise _TooManyHeaders  # stops the parser: uvicorn answers via send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.cancel_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self.refused is not None:
            self.refuse(self.refused)
            return
        super().send_400_response(msg)
