"""A TCP proxy that delays each chunk by a fixed time in each direction: a database on another
host, for benchmarks on a machine whose kernel has no netem.

    python benchmarks/latency_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while chunk := await reader.read(65536):
            await asyncio.sleep(delay)  # per direction: a request/response protocol pays it twice
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(listen: int, host: str, port: int, delay_ms: float) -> None:
    delay = delay_ms / 1000

    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, port)
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay))

    server = await asyncio.start_server(connect, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, host, port, delay_ms = sys.argv[1:5]
    asyncio.run(main(int(listen), host, int(port), float(delay_ms)))
