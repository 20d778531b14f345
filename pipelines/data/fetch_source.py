"""Reading one export for `coinflow data fetch`: a bounded, regular, UTF-8 file or HTTP body.

Nothing is parsed here; what is refused is refused before parsing, naming the file and the
problem, never echoing its content: a symbolic link or anything but a regular file, more than
MAX_EXPORT_BYTES, and bytes that are not UTF-8 text.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

from core.errors import CoinflowError

# A daily history of one asset since 2015 is ~250 KB; 16 MiB is 60x that, and bounds the memory
# a fetch may use (a 200 MB export took 1.9 GB of RAM to refuse when it was parsed first).
MAX_EXPORT_BYTES = 16 * 1024 * 1024


class FetchError(CoinflowError, ValueError):
    """A fetch that cannot be merged; nothing was written."""


def _too_big(where: str, size: int | str) -> FetchError:
    return FetchError(
        f"{where}: {size} bytes, over the {MAX_EXPORT_BYTES} byte limit for one export "
        "(a daily history is well under 1 MB): refused before reading it"
    )


def decode(data: bytes, where: str) -> str:
    """The export's text, or a refusal naming the file and its encoding (content never shown)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FetchError(
            f"{where}: UTF-16 encoded (it starts with a UTF-16 byte-order mark): wrong encoding, "
            "save the export as UTF-8 CSV"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FetchError(
            f"{where}: not UTF-8 encoded (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "wrong encoding, save the export as UTF-8 CSV"
        ) from None


def read_local(path: Path, where: str | None = None) -> bytes:
    """A regular file's bytes, refusing a symbolic link, a FIFO/device/directory or a big file."""
    where = where or str(path)
    try:
        # O_NOFOLLOW: the file itself, never what a link points to; O_NONBLOCK: a FIFO cannot
        # hang the open. The checks run on the open descriptor (no race with a swap).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FetchError(f"{where}: not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FetchError(
                f"{where}: a symbolic link: refused (copy the export itself into the source)"
            ) from None
        raise FetchError(f"{where}: cannot open ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_EXPORT_BYTES:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FetchError(f"{where}: not a regular file (a directory, FIFO or device): refused")
        raise _too_big(where, info.st_size)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_EXPORT_BYTES + 1)  # it may have grown since fstat
    if len(data) > MAX_EXPORT_BYTES:
        raise _too_big(where, f"over {MAX_EXPORT_BYTES}")
    return data


def read_url(url: str, timeout_s: float) -> bytes:
    """An http(s) body, streamed and cut off past MAX_EXPORT_BYTES (retries on connect errors)."""
    import httpx

    transport = httpx.HTTPTransport(retries=3)
    try:
        with (
            httpx.Client(timeout=timeout_s, transport=transport) as client,
            client.stream("GET", url) as response,
        ):
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_EXPORT_BYTES:
                raise _too_big(url, int(declared))
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_EXPORT_BYTES:
                    raise _too_big(url, f"over {MAX_EXPORT_BYTES}")
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
    return bytes(body)


def read_export(source: str, asset: str, timeout_s: float = 10.0) -> str:
    """One asset's export (`<asset>.csv`) from a local directory or an http(s) base URL."""
    name = f"{asset}.csv"
    if source.startswith(("http://", "https://")):
        url = f"{source.rstrip('/')}/{name}"
        return decode(read_url(url, timeout_s), url)
    path = Path(source) / name
    if not os.path.lexists(path):
        raise FetchError(f"{path}: no export for {asset} in the source directory")
    return decode(read_local(path), str(path))
