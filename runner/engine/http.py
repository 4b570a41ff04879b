"""The http step's request: built from the step and the job's parameters, sent outside any transaction."""
from __future__ import annotations

import http.client
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
# Compressed bytes read at most for a long answer's excerpt: if they inflate to less than the excerpt, that is what it keeps.
MAX_COMPRESSED_READ = 64 * 1024
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


class _Unreadable(Exception):
    """The answer's body could not be read or decoded (its status and headers were)."""


def _excerpt(response: http.client.HTTPResponse, method: str) -> bytes:
    """Return the answer's body, decoded (gzip or deflate, which the call offers), up to ``EXCERPT_BYTES``.

    A short body (its Content-Length at most ``EXCERPT_BYTES``) is read
    whole, so its connection can be kept; of a longer one only what the
    excerpt needs is read, and its connection is closed. Raises ``_Unreadable``.
    """
    try:
        if method == "HEAD":
            return response.read()  # nothing, and the answer is done with: its connection is kept
        encoding = (response.getheader("Content-Encoding") or "").strip().lower()
        whole = response.length is not None and response.length <= EXCERPT_BYTES  # length: None when chunked or until close
        if encoding not in ("gzip", "x-gzip", "deflate"):
            return response.read() if whole else response.read(EXCERPT_BYTES)
        return _inflated(response, whole, encoding)
    except SEND_ERRORS + (zlib.error,) as exc:
        name = "zlib.error" if isinstance(exc, zlib.error) else exc.__class__.__name__
        raise _Unreadable(f"<body unreadable: {name}: {exc}>") from exc


def _inflated(response: http.client.HTTPResponse, whole: bool, encoding: str) -> bytes:
    """Inflate a gzip body (member after member) or a deflate one (zlib's format or, as some servers send it, bare), up to the excerpt."""
    wbits = zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS
    inflater, bare = zlib.decompressobj(wbits), False
    out, read, members = b"", 0, 0
    while len(out) < EXCERPT_BYTES and read < MAX_COMPRESSED_READ:
        chunk = response.read() if whole else response.read(4096)
        if not chunk:
            break
        read += len(chunk)
        while chunk and len(out) < EXCERPT_BYTES:
            try:
                out += inflater.decompress(chunk, EXCERPT_BYTES - len(out))
            except zlib.error:
                if members:  # what follows a whole member is not another one: keep what was decoded
                    return out[:EXCERPT_BYTES]
                if out or bare or encoding != "deflate":
                    raise
                inflater, bare = zlib.decompressobj(-zlib.MAX_WBITS), True
                continue
            if not inflater.eof:
                break  # all of the chunk taken (or the excerpt full): read on
            members += 1
            chunk, inflater = inflater.unused_data, zlib.decompressobj(wbits)
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
            raw = _excerpt(response, call.method)
    except _Unreadable as exc:  # a broken body still leaves the status we got; its connection was closed on the way out
        raw = str(exc).encode()
    except SEND_ERRORS as exc:
        return HttpResult(error=describe_send_error(exc, call.timeout), latency_ms=(time.perf_counter() - started) * 1000)
    return HttpResult(status=status, headers=answer_headers, excerpt=raw.decode("utf-8", "replace"),
                      latency_ms=(time.perf_counter() - started) * 1000)
