"""The http step's request on the wire: headers, long answers, redirects and failures, against a real local server."""
from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runner.engine.http import EXCERPT_BYTES, HttpCall, perform
from tests.servers import QuietHandler, untrusted_tls_port
from webhooks import sender
from webhooks.outbound import OutboundPolicy

POLICY = OutboundPolicy.from_setting("127.0.0.1")
LONG = b"x" * (EXCERPT_BYTES * 50)
TEXT = b'{"ok": true, "detail": "compressed"}'
# Text that compresses little: still several times the excerpt once compressed, so it is read in pieces.
NOISE = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(400)).encode()
# Bodies as servers send them, by Content-Encoding: gzip, deflate in zlib's format, and deflate bare (as some servers do).
ENCODED = {"gzip": lambda body: gzip.compress(body), "deflate": lambda body: zlib.compress(body),
           "bare-deflate": lambda body: zlib.compress(body, wbits=-zlib.MAX_WBITS)}


class _Handler(QuietHandler):
    seen: list[dict[str, Any]]

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append({"path": self.path, "headers": self.headers.items(), "port": self.client_address[1]})
        if self.path.startswith("/encoded/"):
            encoding, size = self.path.split("/")[2:4]
            body = TEXT if size == "short" else NOISE
            self.send(200, ENCODED[encoding](body), **{"Content-Encoding": encoding.removeprefix("bare-")})
        elif self.path == "/gzip-members":
            self.send(200, gzip.compress(b"first ") + gzip.compress(b"second"), **{"Content-Encoding": "gzip"})
        elif self.path == "/corrupt-gzip":
            self.send(200, b"not gzip at all", **{"Content-Encoding": "gzip"})
        elif self.path in ("/chunked-short", "/chunked-gzip"):
            body = TEXT if self.path == "/chunked-short" else gzip.compress(NOISE)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            if self.path == "/chunked-gzip":
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            for first in range(0, len(body), 1000):
                piece = body[first:first + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/drop":
            self.close_connection = True  # read the request, answer nothing
        elif self.path == "/long":
            self.send(200, LONG)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"%x\r\n%s\r\n" % (EXCERPT_BYTES, b"y" * EXCERPT_BYTES))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/moved":
            self.send(302, b"", Location="/elsewhere")
        elif self.path == "/slow":
            time.sleep(1)
            self.send(200, b"late")
        else:
            self.send(200, b'{"ok": true}')

    do_POST = do_GET  # noqa: N815

    def do_HEAD(self) -> None:  # noqa: N802
        self.seen.append({"path": self.path, "headers": self.headers.items(), "port": self.client_address[1]})
        self.send_response(200)
        self.send_header("Content-Length", "12")
        self.end_headers()


@pytest.fixture
def site() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"seen": seen}))
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # a client that gave up (the timeout test) is no failure
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def call(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 5) -> HttpCall:
    return HttpCall(method=method, url=url, headers=headers or {}, body=None, timeout=timeout)


def test_a_call_sends_common_client_headers_and_the_steps_own_win_whatever_their_case(site):
    url, seen = site
    assert perform(call(url + "/", headers={"user-agent": "probe/2", "X-Team": "payments"}), POLICY).status == 200
    sent = seen[-1]["headers"]
    assert [value for name, value in sent if name.lower() == "user-agent"] == ["probe/2"]
    assert ("Accept", "*/*") in sent and ("X-Team", "payments") in sent


@pytest.mark.parametrize("path", ["/long", "/chunked"])
def test_a_long_answer_keeps_an_excerpt_and_the_next_call_reads_its_own_answer(site, path):
    url, _ = site
    result = perform(call(url + path), POLICY)
    assert (result.status, len(result.excerpt)) == (200, EXCERPT_BYTES)
    following = perform(call(url + "/short"), POLICY)
    assert (following.status, following.excerpt) == (200, '{"ok": true}')


def _kept(url: str) -> bool:
    """Whether this thread keeps a connection to the local site for the next call."""
    return ("http", "127.0.0.1", int(url.rpartition(":")[2])) in sender._connections()  # noqa: SLF001


@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_a_short_compressed_answer_is_decoded(site, encoding):
    url, _ = site
    result = perform(call(f"{url}/encoded/{encoding}/short"), POLICY)
    assert (result.status, result.excerpt) == (200, TEXT.decode())


@pytest.mark.parametrize("path", [f"/encoded/{encoding}/long" for encoding in sorted(ENCODED)] + ["/chunked-gzip"])
def test_a_long_compressed_answer_keeps_the_excerpt_of_its_decoded_text(site, path):
    url, _ = site
    result = perform(call(url + path), POLICY)
    assert (result.status, result.excerpt) == (200, NOISE[:EXCERPT_BYTES].decode())


def test_every_member_of_a_gzip_answer_is_decoded(site):
    url, _ = site
    assert perform(call(url + "/gzip-members"), POLICY).excerpt == "first second"


def test_a_corrupt_compressed_body_is_reported_with_its_status_and_its_connection_is_not_kept(site):
    url, _ = site
    bad = perform(call(url + "/corrupt-gzip"), POLICY)
    assert (bad.status, bad.error) == (200, None)
    assert bad.excerpt.startswith("<body unreadable: zlib.error: ")
    assert not _kept(url)


@pytest.mark.parametrize(("path", "method"), [("/short", "GET"), ("/chunked-short", "GET"), ("/short", "HEAD")])
def test_an_answer_read_to_its_end_leaves_its_connection_for_the_next_call(site, path, method):
    url, seen = site
    assert perform(call(url + path, method=method), POLICY).status == 200
    assert _kept(url)
    assert perform(call(url + "/short"), POLICY).status == 200
    assert seen[0]["port"] == seen[1]["port"]


@pytest.mark.parametrize("path", ["/long", "/chunked", "/encoded/gzip/long"])
def test_an_answer_cut_at_the_excerpt_closes_its_connection(site, path):
    url, _ = site
    assert perform(call(url + "/short"), POLICY).status == 200
    assert _kept(url)
    assert perform(call(url + path), POLICY).status == 200
    assert not _kept(url)


def test_a_steps_request_is_never_sent_twice_even_on_a_kept_connection_that_fails(site):
    url, seen = site
    assert perform(call(url + "/short"), POLICY).status == 200
    dropped = perform(call(url + "/drop", method="POST"), POLICY)
    assert dropped.status is None and dropped.error.startswith("RemoteDisconnected:")
    assert [(request["path"], request["port"]) for request in seen] == [("/short", seen[0]["port"]), ("/drop", seen[0]["port"])]


def test_a_redirect_is_reported_not_followed(site):
    url, seen = site
    result = perform(call(url + "/moved"), POLICY)
    assert (result.status, result.headers["Location"]) == (302, "/elsewhere")
    assert [request["path"] for request in seen] == ["/moved"]


def test_a_refused_connection_and_a_timeout_are_results_not_exceptions(site):
    url, _ = site
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = perform(call(f"http://127.0.0.1:{port}/"), POLICY)
    assert refused.status is None and refused.error.startswith("ConnectionError:")
    slow = perform(call(url + "/slow", timeout=0.2), POLICY)
    assert (slow.status, slow.error) == (None, "timed out after 0.2s")


def _resolving_to(*addresses: str) -> OutboundPolicy:
    """A policy allowing service.invalid, which it resolves to ``addresses`` (.invalid itself never resolves: RFC 6761)."""
    return OutboundPolicy.from_setting("service.invalid", resolver=lambda host, port: list(addresses))


def test_a_call_goes_to_the_address_the_check_approved_with_the_host_name_in_its_host_header(site):
    url, seen = site
    port = url.rpartition(":")[2]
    result = perform(call(f"http://service.invalid:{port}/short?x=1"), _resolving_to("127.0.0.1"))
    assert (result.status, result.error) == (200, None)
    assert seen[-1]["path"] == "/short?x=1"
    assert dict(seen[-1]["headers"])["Host"] == f"service.invalid:{port}"


def test_the_next_approved_address_is_tried_when_one_refuses_and_a_steps_host_header_wins(site):
    url, seen = site
    port = url.rpartition(":")[2]
    result = perform(call(f"http://service.invalid:{port}/short", headers={"host": "api.example"}), _resolving_to("127.0.0.2", "127.0.0.1"))
    assert result.status == 200
    assert [value for name, value in seen[-1]["headers"] if name.lower() == "host"] == ["api.example"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_a_certificate_that_does_not_verify_fails_the_call(tmp_path: Path):
    with untrusted_tls_port(tmp_path) as port:
        result = perform(call(f"https://127.0.0.1:{port}/"), POLICY)
    assert result.status is None
    assert result.error.startswith("SSLError:") and "CERTIFICATE_VERIFY_FAILED" in result.error


def _link_local_address() -> str | None:
    """A link-local IPv6 address of this machine with its zone (``fe80::…%eth0``), if it has one."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hex_address, _index, _prefix, scope, _flags, interface = line.split()
        if scope == "20":  # link scope
            return f"{socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hex_address))}%{interface}"
    return None


@pytest.mark.parametrize("kind", ["loopback", "link-local"])
def test_an_approved_ipv6_address_is_reached_zone_included(kind):
    """An approved IPv6 address is connected to as it is: loopback shows the form works at all, link-local that the zone (%eth0) survives."""
    address = "::1" if kind == "loopback" else _link_local_address()
    if address is None:
        pytest.skip("this machine has no link-local IPv6 address")
    family, _, _, _, sockaddr = socket.getaddrinfo(address, 0, socket.AF_INET6, socket.SOCK_STREAM)[0]
    seen: list[dict[str, Any]] = []
    server_class = type("Server6", (ThreadingHTTPServer,), {"address_family": family})
    try:
        httpd = server_class(sockaddr, type("Handler", (_Handler,), {"seen": seen}))
    except OSError as exc:
        pytest.skip(f"cannot listen on {address}: {exc}")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = perform(call(f"http://service.invalid:{httpd.server_address[1]}/short"), _resolving_to(address))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (result.status, result.error) == (200, None)
    assert seen[-1]["path"] == "/short"
