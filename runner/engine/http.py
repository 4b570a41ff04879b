"""The http step's request: built from the step and the job's parameters, sent outside any transaction."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import urllib3
from urllib3 import HTTPHeaderDict

from webhooks.outbound import SEND_ERRORS, OutboundPolicy, OutboundRefused, describe_send_error, port_and_target, thread_pool

from ..services.params import render, render_value

__all__ = ["HttpCall", "HttpResult", "build_call", "perform", "EXCERPT_BYTES"]

# Bytes of a response body kept in the step's output.
EXCERPT_BYTES = 2048
# Sent unless the step sets them (in any case): what common HTTP clients send, so endpoints answer as they would to them.
DEFAULT_HEADERS = {"User-Agent": "runbook-manager/1", "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    timeout: float

    @property
    def host(self) -> str:
        """The host the call goes to, for messages (the URL itself when it names none or is malformed)."""
        try:
            return urlsplit(self.url).hostname or self.url
        except ValueError:
            return self.url


@dataclass
class HttpResult:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    excerpt: str = ""
    latency_ms: float = 0.0
    error: str | None = None
    refused: str | None = None

    def output(self) -> dict[str, Any]:
        """What the step's timeline shows of this attempt."""
        out: dict[str, Any] = {"status": self.status, "latency_ms": round(self.latency_ms, 1)}
        if self.excerpt:
            out["response_excerpt"] = self.excerpt
        if self.error:
            out["error"] = self.error
        if self.refused:
            out["refused"] = self.refused
        return out


def build_call(action: dict[str, Any], params: dict[str, Any], *, default_timeout: float) -> HttpCall:
    """Substitute parameters into the URL, headers and body of an http action."""
    return HttpCall(
        method=action.get("method", "GET"),
        url=render(action["url"], params),
        headers={render(k, params): render(v, params) for k, v in (action.get("headers") or {}).items()},
        body=render_value(action.get("body"), params),
        timeout=float(action.get("timeout_seconds") or default_timeout),
    )


def _send(call: HttpCall, parts: SplitResult, addresses: list[str], data: bytes | None,
          headers: HTTPHeaderDict) -> urllib3.BaseHTTPResponse:
    """Send the call to the first of ``addresses`` (those the outbound check approved) that takes the connection.

    The URL's host name is not looked up again, so an answer changed in
    between cannot point the call elsewhere; it stays in the Host header, in
    TLS's server name and in the certificate check.
    """
    port, target = port_and_target(parts)
    hostname = parts.hostname or ""
    pool_kwargs = {"server_hostname": hostname, "assert_hostname": hostname} if parts.scheme == "https" else {}
    refused: urllib3.exceptions.NewConnectionError | None = None
    for address in addresses:  # never empty: the check resolved the host to them
        # An IPv6 address goes in brackets, the only form in which urllib3 keeps a link-local address's zone ("%eth0").
        host = f"[{address}]" if ":" in address else address
        pool = thread_pool().connection_from_host(host, port=port, scheme=parts.scheme, pool_kwargs=pool_kwargs)
        try:
            # urllib3 directly: through requests a call costs about twice the CPU.
            return pool.urlopen(call.method, target, body=data, headers=headers, redirect=False, retries=False, assert_same_host=False,
                                timeout=urllib3.Timeout(connect=call.timeout, read=call.timeout), preload_content=False)
        except urllib3.exceptions.NewConnectionError as exc:
            refused = exc
    raise refused  # type: ignore[misc]


def perform(call: HttpCall, policy: OutboundPolicy) -> HttpResult:
    """Send the request; never raises: refusals, timeouts and errors are part of the result."""
    try:
        addresses = policy.check(call.url)
    except OutboundRefused as exc:
        return HttpResult(refused=str(exc), error=str(exc))
    parts = urlsplit(call.url)
    headers = HTTPHeaderDict(DEFAULT_HEADERS)
    headers["Host"] = parts.netloc.rpartition("@")[2]
    for name, value in call.headers.items():
        headers[name] = value
    data = None
    if call.body is not None:
        if isinstance(call.body, (dict, list)) or not isinstance(call.body, str):
            data = json.dumps(call.body).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            data = call.body.encode()
    started = time.perf_counter()
    try:
        response = _send(call, parts, addresses, data, headers)
    except SEND_ERRORS as exc:
        return HttpResult(error=describe_send_error(exc, call.timeout), latency_ms=(time.perf_counter() - started) * 1000)
    try:
        length = int(response.headers.get("Content-Length", "-1"))
    except ValueError:
        length = -1
    whole = call.method == "HEAD" or 0 <= length <= EXCERPT_BYTES
    try:
        # Read whole when short, so the connection goes back to the pool; else only the excerpt.
        raw = b"" if call.method == "HEAD" else response.read(None if whole else EXCERPT_BYTES, decode_content=True)
    except Exception as exc:  # noqa: BLE001 - a broken body still leaves the status we got
        raw, whole = f"<body unreadable: {exc.__class__.__name__}>".encode(), False
    finally:
        if not whole:
            response.close()  # an unread rest would be taken for the next response on this connection
        response.release_conn()
    return HttpResult(
        status=response.status,
        headers=dict(response.headers),
        excerpt=raw.decode("utf-8", "replace"),
        latency_ms=(time.perf_counter() - started) * 1000,
    )
