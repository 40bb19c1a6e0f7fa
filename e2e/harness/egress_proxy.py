"""The API server's way into the real node's network namespace (#27): an HTTP CONNECT
proxy on a unix socket, run inside that namespace. The API server's egress selector
(`cluster`: the kubelet for logs, exec and port-forward, and the pods and Services it
proxies to) sends its connections here; unix sockets are files, reachable from the host's
namespace, while the TCP connections this proxy opens stay inside the node's. A CONNECT
is the only request it serves, and only to addresses of that namespace (it has no route
anywhere else).

Run: python3 -m harness.egress_proxy SOCKET_PATH
"""

from __future__ import annotations

import asyncio
import os
import sys

MAX_HEAD = 8192


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(request) != 3 or request[0] != "CONNECT" or ":" not in request[1]:
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        writer.close()
        return
    host, _, port = request[1].rpartition(":")
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), timeout=10)
    except (OSError, ValueError, asyncio.TimeoutError) as e:
        writer.write(f"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nX-Error: {e!r}\r\n\r\n".encode())
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def main(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(_serve, path=path, limit=MAX_HEAD)
    os.chmod(path, 0o600)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
