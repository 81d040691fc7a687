"""Knowing which HTTP connections are in the middle of a request, for a graceful stop.

`Draining` wraps the Application as the HTTPServer's delegate, using only
Tornado's public delegate interface: a connection is busy from the moment a
request's headers arrive until the server asks for the next request on it
(HTTP1ServerConnection does that only once the response is completely written)
or the connection closes. `wait_idle` then tells when every response in flight
has finished, so shutdown can close the remaining (idle keep-alive) connections
without cutting a download short.

Tornado's HTTPServer does not pass a connection's close on to its delegate
(`HTTPServer.on_close` only forgets the connection), so a connection that closed
mid-request, or after a `Connection: close` answer, would stay "in flight" for
ever, holding its buffers and making every SIGTERM wait the whole grace period.
`Server` (an HTTPServer that does pass it on, through the same public
`HTTPServerConnectionDelegate.on_close`) is what `serve` listens with.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.httpserver
from tornado import httputil


class Server(tornado.httpserver.HTTPServer):
    """An HTTPServer whose delegate hears of every connection's close."""

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        if isinstance(self.request_callback, httputil.HTTPServerConnectionDelegate):
            self.request_callback.on_close(server_conn)


class Draining(httputil.HTTPServerConnectionDelegate):
    def __init__(self, app: httputil.HTTPServerConnectionDelegate) -> None:
        self.app = app
        self._busy: set[Any] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def _done(self, server_conn: Any) -> None:
        self._busy.discard(server_conn)
        if not self._busy:
            self._idle.set()

    def start_request(self, server_conn: Any, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        self._done(server_conn)  # the previous request on this connection is complete
        return _Watched(self, server_conn, self.app.start_request(server_conn, request_conn))

    def on_close(self, server_conn: Any) -> None:
        self._done(server_conn)
        self.app.on_close(server_conn)

    def _started(self, server_conn: Any) -> None:
        self._busy.add(server_conn)
        self._idle.clear()

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight; False if some still are after `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class _Watched(httputil.HTTPMessageDelegate):
    def __init__(self, owner: Draining, server_conn: Any, inner: httputil.HTTPMessageDelegate) -> None:
        self.owner = owner
        self.server_conn = server_conn
        self.inner = inner

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.owner._started(self.server_conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()
