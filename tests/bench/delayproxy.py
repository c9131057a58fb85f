#!/usr/bin/env python3
"""delayproxy.py - a TCP relay that delays every byte by a fixed time, each way.

Usage: delayproxy.py DELAY_MS LISTEN_HOST:PORT=TARGET_HOST:PORT [...]

For tests/bench/wan-sync: it stands for a wide-area link between two members on one
machine (no netem here). Each accepted connection is relayed to its target; what is read
from one side is written to the other DELAY_MS later, in order, so one round trip costs
2 x DELAY_MS. Bandwidth is whatever the relay manages (hundreds of MB/s on loopback).
Prints "ready" once it listens; runs until killed.
"""
import asyncio
import sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(sender())
    while True:
        try:
            data = await reader.read(65536)
        except ConnectionError:
            data = b""
        await queue.put((loop.time() + delay, data or None))
        if not data:
            break
    await task


async def main():
    delay = float(sys.argv[1]) / 1000.0
    servers = []
    for spec in sys.argv[2:]:
        listen, target = spec.split("=")
        lhost, lport = listen.rsplit(":", 1)
        thost, tport = target.rsplit(":", 1)

        async def relay(r, w, thost=thost, tport=int(tport)):
            try:
                tr, tw = await asyncio.open_connection(thost, tport)
            except OSError:
                w.close()
                return
            await asyncio.gather(pipe(r, tw, delay), pipe(tr, w, delay),
                                 return_exceptions=True)

        servers.append(await asyncio.start_server(relay, lhost, int(lport)))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
