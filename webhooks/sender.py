"""Requests over kept-alive connections: one per (scheme, host, port) per thread, through the standard library's http.client.

Webhook deliveries (``post``) and http steps (``exchange``) go out this way.
No proxies, no redirects (a 3xx is an answer like any other) and no retries
but one, for deliveries only: a kept connection the receiver closed while it
sat idle can fail as it is used. So a delivery on a kept connection that
fails with a broken pipe, a reset or a close before any answer is sent once
more, on a new connection, whenever in the exchange that failure came; a
receiver may therefore get it twice (it deduplicates on ``webhook-id``), and
an attempt can take up to twice its timeout. An http step's request is never
sent twice. Certificates are checked against certifi's CAs, hostname included.
"""
from __future__ import annotations

import functools
import http.client
import select
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import certifi

from .classify import header_value
from .outbound import port_and_target

__all__ = ["Answer", "exchange", "merged_headers", "post"]

# Kept-alive connections one thread holds at most (beyond, the least recently used is closed): bounds its open sockets.
DEFAULT_KEPT_CONNECTIONS = 32
# How a kept connection that the receiver closed while idle fails when used, before any byte of an answer.
_STALE = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)
# Characters left as they are in a request target; anything else (spaces, non-ASCII) is percent-encoded.
_TARGET_SAFE = "!#$%&'()*+,-./:;=?@[]_~"

_Key = tuple[str, str, int]
_local = threading.local()


class Answer(NamedTuple):
    """A receiver's answer: status, headers (names spelled as sent) and the whole body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the value of header ``name``, whatever its case."""
        return header_value(self.headers, name)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, addresses: Sequence[str] = ()) -> Answer:
    """POST ``body`` to ``url`` on this thread's kept connection to its host; raise one of ``SEND_ERRORS`` if no answer comes.

    ``timeout`` bounds the connect and each read, in seconds. A new
    connection goes to one of ``addresses`` when given (those the outbound
    check approved, so that the host name is not resolved a second time, to
    somewhere else), else to wherever the host name resolves.
    """
    with exchange("POST", url, body, headers, timeout=timeout, addresses=addresses, resend_stale=True) as response:
        return Answer(response.status, merged_headers(response), response.read())


@contextmanager
def exchange(method: str, url: str, body: bytes | None, headers: dict[str, str], *, timeout: float, addresses: Sequence[str] = (),
             resend_stale: bool = False) -> Iterator[http.client.HTTPResponse]:
    """Send a request on this thread's kept connection to ``url``'s host and yield the answer, its body left to read.

    As ``post``, but the request is sent again on a new connection after a
    stale kept one failed only with ``resend_stale``. The connection is kept
    for the next request when the body was read to its end and the receiver
    did not close it; otherwise it is closed.
    """
    key, target = _split(url)
    conn, kept = _take(key, timeout, addresses)
    try:
        try:
            response = _send(conn, method, target, body, headers)
        except _STALE:
            if not (kept and resend_stale):
                raise
            conn.close()
            conn = _connect(key, timeout, addresses)
            response = _send(conn, method, target, body, headers)
        yield response
    except BaseException:
        conn.close()
        raise
    # Closed once read to its end; an unread rest would be taken for the next answer on this connection.
    if response.will_close or not response.isclosed():
        conn.close()
    else:
        _keep(key, conn)


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[_Key, str]:
    """Return (scheme, host, port) and the request target (path and query) of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"only absolute http and https URLs can be sent to, got {url!r}")
    port, target = port_and_target(parts)
    return (parts.scheme, parts.hostname, port), quote(target, safe=_TARGET_SAFE)


def _send(conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None,
          headers: dict[str, str]) -> http.client.HTTPResponse:
    conn.request(method, target, body=body, headers=headers)
    return conn.getresponse()


def _connections() -> dict[_Key, http.client.HTTPConnection]:
    """This thread's idle connections, least recently used first."""
    try:
        return _local.connections
    except AttributeError:
        _local.connections = {}
        return _local.connections


def _take(key: _Key, timeout: float, addresses: Sequence[str]) -> tuple[http.client.HTTPConnection, bool]:
    """Return this thread's idle connection for ``key`` if the receiver has not closed it (and True), else a new one (and False)."""
    conn = _connections().pop(key, None)
    if conn is not None:
        if conn.sock is not None and not _readable(conn.sock):
            if conn.timeout != timeout:
                conn.timeout = timeout
                conn.sock.settimeout(timeout)
            return conn, True
        conn.close()
    return _connect(key, timeout, addresses), False


def _keep(key: _Key, conn: http.client.HTTPConnection) -> None:
    """Put ``conn`` back for the next request to ``key``, closing the least recently used beyond the limit."""
    connections = _connections()
    connections[key] = conn
    if len(connections) > DEFAULT_KEPT_CONNECTIONS:
        connections.pop(next(iter(connections))).close()


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the receiver closed it, or sent what nobody asked for."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _connect(key: _Key, timeout: float, addresses: Sequence[str]) -> http.client.HTTPConnection:
    """Open a connection (to one of ``addresses`` if given); a failure other than a timeout or a TLS error is raised as
    ConnectionError naming the address."""
    scheme, host, port = key
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if addresses:
        # http.client's hook for opening the socket; the Host header, SNI and the certificate check keep the host name.
        conn._create_connection = functools.partial(_open_one_of, tuple(addresses))  # noqa: SLF001
    try:
        conn.connect()
    except (TimeoutError, ssl.SSLError):
        conn.close()
        raise
    except OSError as exc:
        conn.close()
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConnectionError(f"cannot connect to {address}: {exc}") from exc
    return conn


def _open_one_of(addresses: tuple[str, ...], address: tuple[str, int], timeout: float, source_address: Any = None) -> socket.socket:
    """Connect to the first of ``addresses`` that answers, on ``address``'s port; raise the last failure if none does."""
    error: OSError | None = None
    for ip in addresses:
        try:
            return socket.create_connection((ip, address[1]), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error  # type: ignore[misc]  # addresses is never empty here


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings of every HTTPS connection: certifi's CAs, certificate and hostname required, HTTP/1.1."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


def merged_headers(response: http.client.HTTPResponse) -> dict[str, str]:
    """Return an answer's headers by name as the receiver first spelled it, the values of a repeated header joined with ", "."""
    headers: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in response.getheaders():
        name = spelled.setdefault(name.lower(), name)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
