"""Names and helpers shared by the provider tests (their fixtures are in conftest)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sms_dispatch.domain import Message, Status
from sms_dispatch.ports import SmsProvider

CLIENTS = ["pyreqwest", "aiohttp"]
"""The HTTP clients ``PROVIDER_HTTP_CLIENT`` offers: each provider test runs on both."""

PROVIDER_AUTH_KEY = "INS.me1x9uMcyYGlhKKQVPoc.bO3j9aZwRTOcA2Ywo"
"""The key the provider tests' simulators accept."""

ProviderFactory = Callable[..., SmsProvider]
"""``make_provider(url, auth_key=PROVIDER_AUTH_KEY)``: a provider on the test's client."""


def make_message(to: str = "+905551111111", content: str = "Insider - Project") -> Message:
    """Build a claimed message as the core hands it to the provider."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    return Message(
        id=uuid.uuid4(),
        to=to,
        content=content,
        status=Status.SENDING,
        attempts=1,
        created_at=now,
        updated_at=now,
    )


def closed_port() -> int:
    """Return a local port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ACCEPTED = b'{"message":"Accepted","messageId":"p-1"}'
"""The provider's 202 body: message ``p-1`` accepted."""

_PIECE_BYTES = 65_536


@dataclass
class RawServer:
    """Answers every request with ``answer`` (raw bytes) and records what it saw and wrote.

    The answer is written in pieces, each drained, so a client that stops reading a huge one
    and hangs up cuts it short: ``written`` then holds fewer bytes than the answer has.
    """

    answer: bytes = b""
    heads: list[bytes] = field(default_factory=list)
    url: str = ""
    written: list[int] = field(default_factory=list)
    """Bytes of each answer written before it ended: all of them, or fewer if the client hung up."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read each request (head and Content-Length body) and write the canned answer."""
        # A small send buffer (no autotuning) keeps what the kernel takes off our hands small,
        # so that "cut short" tells a client that stopped reading from one that read it all.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _PIECE_BYTES)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if not await self._write(writer, self.answer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Write ``data`` piece by piece; return False if the client hung up before the end."""
        view = memoryview(data)
        written = 0
        try:
            for start in range(0, len(view), _PIECE_BYTES):
                piece = view[start : start + _PIECE_BYTES]
                writer.write(piece)
                await writer.drain()
                written += len(piece)
        except ConnectionError:
            pass
        self.written.append(written)
        return written == len(data)

    async def answers_ended(self, count: int, timeout_s: float = 5.0) -> list[int]:
        """Wait until ``count`` answers were written whole or cut short; return ``written``."""
        async with asyncio.timeout(timeout_s):
            while len(self.written) < count:
                await asyncio.sleep(0.01)
        return self.written


def answer(status: str, body: bytes = b"", *headers: bytes, chunked: bool = False) -> bytes:
    """An HTTP/1.1 keep-alive answer with the status line, extra header lines and body.

    The body goes with a Content-Length, or ``chunked`` in Transfer-Encoding chunks of 8 KiB.
    """
    lines = [f"HTTP/1.1 {status}".encode(), b"Content-Type: application/json", *headers]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        pieces = [body[start : start + 8_192] for start in range(0, len(body), 8_192)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
