"""Zero-copy response bodies: os.sendfile from a file straight into the client's
socket, after Tornado has flushed the headers (the seam over Tornado's connection).

Tornado has no sendfile: a body goes file -> bytes (a thread's pread) -> Tornado's
write buffer -> socket. Here the kernel copies file pages to the socket itself,
with no thread hop and no Python bytes. web/media_handlers.py calls `send_body` for
a file body it would otherwise read in chunks; everything around the body (access,
and answer.py's Range, If-Range, 304, HEAD, gzip, Content-Length) stays theirs. The
segment lane (web/segment_lane.py) writes its headers with
HTTP1Connection.write_headers and calls `send_after_headers`.

How it meets Tornado:
- `usable(request)` is False, and the handler keeps its chunked reads, where the
  kernel cannot do the work: a TLS stream (an SSLIOStream: the bytes must be
  encrypted in user space), a platform without os.sendfile, a connection that is
  not Tornado's HTTP/1 server connection (HTTP1Connection), or a Tornado whose
  HTTP1Connection no longer keeps the count described next.
- The one private attribute: HTTP1Connection._expected_content_remaining, the
  body bytes Tornado still expects after the Content-Length header (its finish()
  refuses to end a response short of it). Bytes sent here are subtracted from it,
  so Tornado's own framing check still holds. tests/test_zerocopy.py pins it: a
  Tornado upgrade that renames or stops keeping it fails there loudly, and in
  production `usable` turns False (chunked reads, no error).
  Public alternatives were worse: chunked transfer coding would drop
  Content-Length, and a hand-written header block (the deprecated
  HTTP1Connection.write path) would copy Tornado's keep-alive rules.
- The socket: `connection.stream.socket` (public attributes). The sendfile runs
  on a dup() of its descriptor, non-blocking (the dup shares O_NONBLOCK): on
  EAGAIN it waits for writability with the loop's add_writer on the dup, so it
  never blocks the loop and never touches Tornado's registration of the original
  descriptor. Should Tornado close the connection meanwhile (client gone, server
  shutdown), the dup keeps the descriptor number from being reused under us, and
  `Sender.abort` (the handler's on_connection_close) ends the wait.
- Client aborts (EPIPE, ECONNRESET, ENOTCONN, or the connection closed while
  waiting) raise ClientGone after Tornado's stream is closed: no traceback, the
  response ends, and the file descriptor stays the caller's to close.
- The file pages come from the page cache; handlers open files with
  POSIX_FADV_WILLNEED (mediafiles.open_inside) so a cold segment is read ahead
  by the kernel instead of inside sendfile on the loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
from typing import Any

import tornado.http1connection
import tornado.iostream

log = logging.getLogger(__name__)

# The private attribute this module relies on (see above); tests pin its meaning.
PINNED_ATTRIBUTE = "_expected_content_remaining"
HAVE_SENDFILE = hasattr(os, "sendfile")
# errnos of a client that went away mid-body.
CLIENT_GONE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED})


# Bodies sent whole by sendfile in this process (tests: the zero-copy path was taken).
bodies_sent = 0


class ClientGone(Exception):
    """The client closed the connection before the whole body was sent."""


def _plain_socket(connection: Any) -> Any:
    stream = getattr(connection, "stream", None)
    if stream is None or isinstance(stream, tornado.iostream.SSLIOStream):
        return None
    sock = getattr(stream, "socket", None)
    if sock is None or isinstance(sock, ssl.SSLSocket):
        return None
    return sock


def usable(request: Any) -> bool:
    """Whether this request's body can be sent with sendfile (see the module docstring)."""
    connection = request.connection
    return (
        HAVE_SENDFILE
        and isinstance(connection, tornado.http1connection.HTTP1Connection)
        and isinstance(getattr(connection, PINNED_ATTRIBUTE, None), (int, type(None)))
        and _plain_socket(connection) is not None
    )


class Sender:
    """One body being sent; `abort()` (from on_connection_close) ends it early."""

    def __init__(self) -> None:
        self._aborted = asyncio.get_running_loop().create_future()
        self.sent = 0

    def abort(self) -> None:
        if not self._aborted.done():
            self._aborted.set_result(None)

    async def send_body(self, handler: Any, fd: int, start: int, end: int) -> bool:
        """Flush the handler's headers (Content-Length must be end - start), then
        send bytes [start, end) of `fd`. False when the connection turned out
        unsuitable after all (nothing of the body sent: the caller writes it its
        own way); ClientGone when the client left."""
        try:
            await handler.flush()
        except tornado.iostream.StreamClosedError:
            raise ClientGone() from None
        return await self.send_after_headers(handler.request.connection, fd, start, end)

    async def send_after_headers(self, connection: Any, fd: int, start: int, end: int) -> bool:
        """send_body once the headers are written (web/segment_lane.py writes its own)."""
        if getattr(connection, PINNED_ATTRIBUTE, None) != end - start:
            # Tornado does not count the body as we expect (a changed Tornado,
            # or a transform that altered the headers): let Tornado write it.
            log.warning("sendfile: Tornado's body accounting is not what zerocopy.py expects; sending in chunks")
            return False
        sock = _plain_socket(connection)
        if sock is None or self._aborted.done():
            self._close(connection)
            raise ClientGone()
        try:
            out = os.dup(sock.fileno())
        except OSError:  # closed between the flush and now
            self._close(connection)
            raise ClientGone() from None
        try:
            await self._pump(out, fd, start, end)
        except ClientGone:
            self._close(connection)
            raise
        finally:
            os.close(out)
            # Tornado's own check: the bytes it expects are the ones sent here.
            setattr(connection, PINNED_ATTRIBUTE, getattr(connection, PINNED_ATTRIBUTE) - self.sent)
        global bodies_sent
        bodies_sent += 1
        return True

    async def _pump(self, out: int, fd: int, start: int, end: int) -> None:
        offset = start
        while offset < end:
            if self._aborted.done():
                raise ClientGone()
            try:
                sent = os.sendfile(out, fd, offset, end - offset)
            except BlockingIOError:
                await self._writable(out)
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in CLIENT_GONE_ERRNOS:
                    raise ClientGone() from None
                raise
            if sent == 0:
                raise OSError(f"file ended at byte {offset} of {end} while being sent")
            offset += sent
            self.sent += sent

    async def _writable(self, out: int) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_writer(out, lambda: None if ready.done() else ready.set_result(None))
        try:
            await asyncio.wait((ready, self._aborted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_writer(out)
            if not ready.done():
                ready.cancel()

    @staticmethod
    def _close(connection: Any) -> None:
        """End the connection (the body cannot be completed); Tornado then finishes quietly."""
        stream = getattr(connection, "stream", None)
        if stream is not None:
            stream.close()
