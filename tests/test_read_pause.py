"""dmem.ReadPause: a following channel's socket left unread for a moment after a message."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dmem import ReadPause


async def test_a_burst_during_the_pause_arrives_in_one_read() -> None:
    sent: list[asyncio.StreamWriter] = []
    accepted = asyncio.Event()

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent.append(writer)
        accepted.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    transport: Any = writer.transport  # a socket transport: it has is_reading()
    pause = ReadPause(transport, pause=0.2)
    try:
        await asyncio.wait_for(accepted.wait(), 5)
        peer = sent[0]

        started = time.monotonic()
        peer.write(b"first;")
        assert await reader.read(100) == b"first;"
        assert time.monotonic() - started < 0.15, "the first message after quiet waits"
        pause.after_message()
        assert not transport.is_reading()

        for n in range(5):  # five writes, each its own segment, while paused
            peer.write(b"m%d;" % n)
            await peer.drain()
            await asyncio.sleep(0.01)
        assert not transport.is_reading(), "resumed before the pause ended"
        burst = await asyncio.wait_for(reader.read(100), 1)
        assert burst == b"m0;m1;m2;m3;m4;", "the burst came in more than one read"
        assert transport.is_reading()

        pause.after_message()
        pause.cancel()  # the connection is done with: no timer left behind
        await asyncio.sleep(0.25)
        assert not transport.is_reading()
    finally:
        writer.close()
        for peer in sent:
            peer.close()
        server.close()
        await server.wait_closed()


async def test_without_a_transport_it_never_pauses() -> None:
    pause = ReadPause(None)
    pause.after_message()
    pause.cancel()
