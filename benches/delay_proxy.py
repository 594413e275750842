#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction, for the
benchmark suite: put between workers and Redis, it shows how a distributed run holds up
over a network with latency. Unlike a sleep per read, it does not cut throughput: what
is read is stamped and forwarded when its time comes, while reading goes on.

    delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS [--stats FILE]

Listens on 127.0.0.1:LISTEN_PORT, forwards to 127.0.0.1:TARGET_PORT.

With --stats FILE it also counts what its clients ask of Redis and writes it as JSON to
FILE when it is terminated (SIGTERM or SIGINT): request bursts (reads from a client, so
about the round trips its clients waited for: a pipelined batch of commands is one),
the Redis commands in them by name (RESP arrays, top level: a script's own calls are
not seen here), and bytes each way.
"""

import asyncio
import json
import signal
import sys
import time
from collections import Counter

STATS = {"bursts": 0, "commands": Counter(), "bytes_up": 0, "bytes_down": 0, "connections": 0}


class Resp:
    """Counts the commands (RESP arrays of bulk strings) in a client's byte stream."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        while True:
            name, used = self.command(self.buf)
            if used == 0:
                return
            self.buf = self.buf[used:]
            STATS["commands"][name] += 1

    @staticmethod
    def command(buf):
        """(name, bytes used) of the first whole command in buf, or (None, 0)."""
        if not buf:
            return None, 0
        if buf[:1] != b"*":  # an inline command: one line
            end = buf.find(b"\r\n")
            if end < 0:
                return None, 0
            return buf[:end].split(b" ")[0].decode(errors="replace").upper(), end + 2
        end = buf.find(b"\r\n")
        if end < 0:
            return None, 0
        count = int(buf[1:end])
        pos, name = end + 2, None
        for i in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None, 0
            size = int(buf[pos + 1:end])
            start = end + 2
            if len(buf) < start + size + 2:
                return None, 0
            if i == 0:
                name = buf[start:start + size].decode(errors="replace").upper()
            pos = start + size + 2
        return name, pos


async def pump(reader, writer, delay, up, counting):
    queue = asyncio.Queue()
    resp = Resp() if counting and up else None

    async def read():
        while True:
            data = await reader.read(65536)
            if data and counting:
                if up:
                    STATS["bursts"] += 1
                    STATS["bytes_up"] += len(data)
                    resp.feed(data)
                else:
                    STATS["bytes_down"] += len(data)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def write():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, asyncio.CancelledError):
        writer.close()


async def main():
    args = sys.argv[1:]
    stats = None
    if "--stats" in args:
        i = args.index("--stats")
        stats = args[i + 1]
        del args[i:i + 2]
    listen, target, delay = int(args[0]), int(args[1]), float(args[2]) / 1000

    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        STATS["connections"] += 1
        await asyncio.gather(
            pump(client_reader, server_writer, delay, True, stats is not None),
            pump(server_reader, client_writer, delay, False, stats is not None),
            return_exceptions=True,
        )

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    async with server:
        await done.wait()
        # Connections still open are cut at exit: nothing to report of them.
        loop.set_exception_handler(lambda _loop, _context: None)
    if stats:
        with open(stats, "w") as f:
            json.dump(dict(STATS, commands=dict(STATS["commands"])), f)


if __name__ == "__main__":
    asyncio.run(main())
