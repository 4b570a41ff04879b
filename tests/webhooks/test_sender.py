"""The delivery sender on the wire: kept-alive connections, receivers that close them, no redirects, how failures read."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.processes import free_port
from tests.servers import QuietHandler, untrusted_tls_port
from webhooks import sender
from webhooks.classify import Verdict, classify_response
from webhooks.delivery import _post
from webhooks.outbound import OutboundPolicy
from webhooks.sender import post
from webhooks.signing import generate_secret, signed_headers, verify

POLICY = OutboundPolicy.from_setting("127.0.0.1, ::1")
BODY = b'{"type":"runbook.invoked","data":{"x":"caf\xc3\xa9"}}'
# How long a test waits for the receiver to do what it expects (only a failing test waits this long).
PATIENCE = 5.0


class Receiver:
    """A local HTTP/1.1 receiver that counts the connections it accepts and closes, and answers by path.

    ``/close`` answers with ``Connection: close``; ``/hang-up`` answers, then ends its side of the connection without
    saying so (but would still read a request sent on it);
    ``/moved`` redirects; ``/silent`` never answers; ``/odd`` answers 503 with unusual headers; anything else 200.
    With ``answers_per_connection``, a connection that has answered that many requests reads the next one and
    closes instead of answering it.
    """

    def __init__(self, *, host: str = "127.0.0.1", answers_per_connection: int | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.dropped = 0
        self.hung_up = 0
        self.accepted = 0
        self.closed = 0
        self.sockets: list[socket.socket] = []
        self.silence = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                super().setup()
                self.answered = 0

            def handle_one_request(self) -> None:
                if answers_per_connection is not None and self.answered >= answers_per_connection:
                    self.raw_requestline = self.rfile.readline()
                    if self.raw_requestline and self.parse_request():
                        self.rfile.read(int(self.headers.get("Content-Length") or 0))
                        receiver.dropped += 1
                    self.close_connection = True
                    return
                super().handle_one_request()
                self.answered += 1

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": self.headers.items(), "body": body, "peer": self.client_address})
                if self.path == "/silent":
                    receiver.silence.wait(PATIENCE)
                    self.close_connection = True
                elif self.path == "/close":
                    self.send(200, b"{}", Connection="close")
                elif self.path == "/hang-up":
                    self.send(200, b"{}")
                    self.connection.shutdown(socket.SHUT_WR)
                    receiver.hung_up += 1
                elif self.path == "/moved":
                    self.send(302, b"", Location="/elsewhere")
                elif self.path == "/odd":
                    self.send_response(503)
                    for name, value in [("retry-after", "7"), ("X-Tag", "a"), ("x-tag", "b"), ("content-type", "text/plain; charset=iso-8859-1")]:
                        self.send_header(name, value)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write("caf\xe9".encode("latin-1"))
                else:
                    self.send(200, json.dumps({"path": self.path}).encode(), **{"Retry-After": "3", "Content-Type": "application/json"})

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                request, address = super().get_request()
                receiver.accepted += 1
                receiver.sockets.append(request)
                return request, address

            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                receiver.closed += 1

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (the timeout test) is no failure

        self.httpd = Server((host, 0), Handler)
        authority = f"[{host}]" if ":" in host else host
        self.url = f"http://{authority}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def paths(self) -> list[str]:
        return [request["path"] for request in self.requests]

    def wait_until(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PATIENCE
        while not ready():
            assert time.monotonic() < deadline, "the receiver did not get there in time"
            time.sleep(0.005)

    def close(self) -> None:
        self.silence.set()
        self.httpd.shutdown()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.httpd.server_close()


@pytest.fixture
def receive() -> Iterator[Callable[..., Receiver]]:
    """Start a Receiver: ``receive()`` or ``receive(answers_per_connection=1)``; forget this thread's kept connections after."""
    receivers: list[Receiver] = []

    def build(**options: Any) -> Receiver:
        receivers.append(Receiver(**options))
        return receivers[-1]

    yield build
    for conn in sender._connections().values():
        conn.close()
    sender._connections().clear()
    for receiver in receivers:
        receiver.close()


def send(url: str, timeout: float = 5.0) -> sender.Answer:
    return post(url, BODY, {"Content-Type": "application/json"}, timeout=timeout)


# --- keep-alive -----------------------------------------------------------------------------------------------


def test_posts_to_one_receiver_share_one_connection(receive):
    receiver = receive()

    statuses = [send(receiver.url + f"/hook/{n}").status for n in range(3)]

    assert statuses == [200, 200, 200]
    assert receiver.accepted == 1
    assert len({request["peer"] for request in receiver.requests}) == 1


def test_each_thread_has_its_own_connection(receive):
    receiver = receive()
    send(receiver.url + "/main")
    other = threading.Thread(target=send, args=(receiver.url + "/other",))
    other.start()
    other.join()

    send(receiver.url + "/main-again")

    assert receiver.paths() == ["/main", "/other", "/main-again"]
    assert receiver.accepted == 2


def test_a_connection_the_receiver_closed_while_idle_is_replaced(receive):
    receiver = receive()
    assert send(receiver.url + "/hang-up").status == 200
    receiver.wait_until(lambda: receiver.hung_up == 1)

    answer = send(receiver.url + "/next")

    assert answer.status == 200
    assert receiver.paths() == ["/hang-up", "/next"]
    assert receiver.accepted == 2


def test_a_kept_connection_closed_as_the_post_arrives_is_retried_once_on_a_new_one(receive):
    receiver = receive(answers_per_connection=1)
    send(receiver.url + "/first")

    answer = send(receiver.url + "/second")

    assert (answer.status, json.loads(answer.body)) == (200, {"path": "/second"})
    assert (receiver.paths(), receiver.dropped, receiver.accepted) == (["/first", "/second"], 1, 2)


def test_a_new_connection_closed_without_an_answer_is_not_retried(receive):
    receiver = receive(answers_per_connection=0)

    outcome = _post(receiver.url + "/hook", BODY, {}, 5.0, POLICY)

    assert (outcome.status, outcome.error) == (None, "RemoteDisconnected: Remote end closed connection without response")
    assert (receiver.dropped, receiver.accepted) == (1, 1)


def test_an_answer_saying_connection_close_ends_the_connection(receive):
    receiver = receive()
    assert send(receiver.url + "/close").status == 200
    assert sender._connections() == {}  # not kept for the next POST
    receiver.wait_until(lambda: receiver.closed == 1)

    assert send(receiver.url + "/next").status == 200

    assert receiver.accepted == 2
    assert receiver.paths() == ["/close", "/next"]


def test_the_least_recently_used_connection_is_closed_beyond_the_limit(receive, monkeypatch):
    monkeypatch.setattr(sender, "DEFAULT_KEPT_CONNECTIONS", 1)
    first, second = receive(), receive()
    send(first.url + "/a")
    send(second.url + "/b")
    first.wait_until(lambda: first.closed == 1)

    send(first.url + "/c")

    assert (first.accepted, second.accepted) == (2, 1)


# --- what is sent and what comes back -------------------------------------------------------------------------


def test_body_signature_headers_and_path_with_query_reach_the_receiver_as_sent(receive):
    receiver = receive()
    secret = generate_secret()
    headers = {**signed_headers(secret, "msg_1", BODY, timestamp=int(time.time())), "Content-Type": "application/json",
               "User-Agent": "runbook-manager-webhooks/1"}

    assert post(receiver.url + "/hooks/in?team=ops&x=1", BODY, headers, timeout=5).status == 200

    [request] = receiver.requests
    sent = dict(request["headers"])
    assert (request["path"], request["body"]) == ("/hooks/in?team=ops&x=1", BODY)
    assert verify(secret, sent, request["body"]) == "msg_1"
    assert {name: sent[name] for name in ("Content-Type", "User-Agent", "Content-Length", "Host")} == {
        "Content-Type": "application/json", "User-Agent": "runbook-manager-webhooks/1", "Content-Length": str(len(BODY)),
        "Host": receiver.url.removeprefix("http://")}


@pytest.mark.parametrize(("rest", "target"), [
    ("", "/"),
    ("?probe=1", "/?probe=1"),
    ("/in box/caf\u00e9?q=a%20b", "/in%20box/caf%C3%A9?q=a%20b"),
])
def test_the_request_target_is_the_path_and_query_percent_encoded(receive, rest, target):
    receiver = receive()

    send(receiver.url + rest)

    assert receiver.paths() == [target]


def test_an_ipv6_literal_is_reached_with_its_brackets_in_the_host_header(receive):
    try:
        receiver = receive(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")

    assert send(receiver.url + "/six").status == 200

    [request] = receiver.requests
    assert dict(request["headers"])["Host"] == receiver.url.removeprefix("http://")


def test_a_redirect_is_an_answer_not_followed(receive):
    receiver = receive()

    answer = send(receiver.url + "/moved")

    assert (answer.status, answer.headers["Location"], answer.body) == (302, "/elsewhere", b"")
    assert receiver.paths() == ["/moved"]


def test_answer_headers_keep_the_receivers_spelling_and_the_outcome_reads_them(receive):
    receiver = receive()

    outcome = _post(receiver.url + "/odd", BODY, {}, 5.0, POLICY)

    assert (outcome.status, outcome.excerpt) == (503, "café")
    assert {name: outcome.headers[name] for name in ("retry-after", "X-Tag")} == {"retry-after": "7", "X-Tag": "a, b"}
    normal = _post(receiver.url + "/hook", BODY, {}, 5.0, POLICY)
    assert classify_response(503, normal.headers).retry_after == 3.0


# --- failures, worded as step outputs and delivery attempts record them ----------------------------------------


def test_a_receiver_that_never_answers_times_out(receive):
    receiver = receive()

    outcome = _post(receiver.url + "/silent", BODY, {}, 0.2, POLICY)

    assert (outcome.status, outcome.error) == (None, "timed out after 0.2s")
    assert classify_response(outcome.status, outcome.headers, error=outcome.error).verdict is Verdict.RETRY


def test_a_tls_handshake_that_never_completes_times_out():
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts the connection (backlog) but never speaks TLS
        outcome = _post(f"https://127.0.0.1:{mute.getsockname()[1]}/hook", BODY, {}, 0.2, POLICY)

    assert (outcome.status, outcome.error) == (None, "timed out after 0.2s")


def test_nothing_listening_is_a_connection_error_naming_the_refusal():
    port = free_port()

    outcome = _post(f"http://127.0.0.1:{port}/hook", BODY, {}, 5.0, POLICY)

    assert outcome.status is None
    assert outcome.error.startswith(f"ConnectionError: cannot connect to 127.0.0.1:{port}: ")
    assert "refused" in outcome.error


# --- where a connection goes ----------------------------------------------------------------------------------


def test_a_connection_goes_to_the_address_the_check_approved_not_a_second_lookup(receive):
    receiver = receive()
    port = receiver.httpd.server_address[1]
    looked_up: list[str] = []

    def resolver(host: str, _port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    # .invalid never resolves (RFC 6761): only the check's resolver can say where the receiver is.
    policy = OutboundPolicy.from_setting("receiver.invalid", resolver=resolver)
    outcome = _post(f"http://receiver.invalid:{port}/hook", BODY, {}, 5.0, policy)

    assert (outcome.status, outcome.error) == (200, None)
    assert looked_up == ["receiver.invalid"]
    assert dict(receiver.requests[-1]["headers"])["Host"] == f"receiver.invalid:{port}"


def test_the_next_approved_address_is_tried_when_one_refuses(receive):
    receiver = receive()
    port = receiver.httpd.server_address[1]

    answer = post(f"http://receiver.invalid:{port}/hook", BODY, {}, timeout=5.0, addresses=["127.0.0.2", "127.0.0.1"])

    assert answer.status == 200
    assert receiver.paths() == ["/hook"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_a_certificate_that_does_not_verify_is_an_ssl_error(tmp_path: Path):
    with untrusted_tls_port(tmp_path) as port:
        outcome = _post(f"https://127.0.0.1:{port}/hook", BODY, {}, 5.0, POLICY)

    assert outcome.status is None
    assert outcome.error.startswith("SSLError: [SSL: CERTIFICATE_VERIFY_FAILED]")
