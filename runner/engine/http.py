"""The http step's request: built from the step and the job's parameters, sent outside any transaction."""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from webhooks.outbound import SEND_ERRORS, OutboundPolicy, OutboundRefused, describe_send_error
from webhooks.sender import exchange, merged_headers

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


# Compressed bytes read at most for a long answer's excerpt: if they inflate to less than the excerpt, that is what it keeps.
MAX_COMPRESSED_READ = 64 * 1024


def _excerpt(response: Any, method: str) -> bytes:
    """The answer's body, decoded (gzip or deflate, which the call offers), up to ``EXCERPT_BYTES``.

    A short body (its Content-Length at most ``EXCERPT_BYTES``) is read
    whole, so its connection can be kept; of a longer one only what the
    excerpt needs is read, and its connection is closed.
    """
    if method == "HEAD":
        return response.read()  # nothing, and the answer is done with: its connection is kept
    encoding = (response.getheader("Content-Encoding") or "").strip().lower()
    length = response.length  # None when not given (chunked, or until the connection closes)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return response.read() if length is not None and length <= EXCERPT_BYTES else response.read(EXCERPT_BYTES)
    # gzip, or deflate as zlib's format or (as some servers send it) bare.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS)
    out, read, bare_tried = b"", 0, encoding != "deflate"
    whole = length is not None and length <= EXCERPT_BYTES
    while len(out) < EXCERPT_BYTES and read < MAX_COMPRESSED_READ:
        chunk = response.read() if whole else response.read(4096)
        if not chunk:
            break
        read += len(chunk)
        try:
            out += inflater.decompress(chunk, EXCERPT_BYTES - len(out))
        except zlib.error:
            if bare_tried or read != len(chunk):
                raise
            bare_tried, inflater = True, zlib.decompressobj(-zlib.MAX_WBITS)
            out += inflater.decompress(chunk, EXCERPT_BYTES - len(out))
    return out[:EXCERPT_BYTES]


def perform(call: HttpCall, policy: OutboundPolicy) -> HttpResult:
    """Send the request; never raises: refusals, timeouts and errors are part of the result.

    The request goes to the first of the addresses the outbound check
    approved that takes the connection: the URL's host name is not looked up
    again, so an answer changed in between cannot point the call elsewhere;
    it stays in the Host header, in TLS's server name and in the certificate
    check. Through http.client on a kept-alive connection, at about a third
    of urllib3's CPU per call.
    """
    try:
        addresses = policy.check(call.url)
    except OutboundRefused as exc:
        return HttpResult(refused=str(exc), error=str(exc))
    # Case-insensitive: a step's own header replaces the default of the same name, spelled as the step spells it.
    headers = {name.lower(): (name, value) for name, value in DEFAULT_HEADERS.items()}
    headers["host"] = ("Host", urlsplit(call.url).netloc.rpartition("@")[2])
    for name, value in call.headers.items():
        headers[name.lower()] = (name, value)
    data = None
    if call.body is not None:
        if isinstance(call.body, (dict, list)) or not isinstance(call.body, str):
            data = json.dumps(call.body).encode()
            headers.setdefault("content-type", ("Content-Type", "application/json"))
        else:
            data = call.body.encode()
    started = time.perf_counter()
    try:
        with exchange(call.method, call.url, data, dict(headers.values()), timeout=call.timeout, addresses=addresses) as response:
            status, answer_headers = response.status, merged_headers(response)
            try:
                raw = _excerpt(response, call.method)
            except SEND_ERRORS + (zlib.error,) as exc:  # a broken body still leaves the status we got
                raw = f"<body unreadable: {exc.__class__.__name__}>".encode()
    except SEND_ERRORS as exc:
        return HttpResult(error=describe_send_error(exc, call.timeout), latency_ms=(time.perf_counter() - started) * 1000)
    return HttpResult(status=status, headers=answer_headers, excerpt=raw.decode("utf-8", "replace"),
                      latency_ms=(time.perf_counter() - started) * 1000)
