"""Local servers for tests: an HTTP server that counts hits per path and answers from a script, and a TLS listener
whose certificate no client trusts."""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with kept-alive connections, no log lines, and ``send(status, body, **headers)`` for whole answers."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle and delayed ACKs add 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CountingServer:
    """Answer 200 unless a path was scripted (``script("/x", 500, 500, 200)``); remember every request."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = defaultdict(int)
        self.requests: list[dict[str, Any]] = []
        self.scripts: dict[str, list[int | tuple[int, dict[str, str]]]] = {}
        self.delays: dict[str, float] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                with server.lock:
                    server.hits[path] += 1
                    server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
                    script = server.scripts.get(path)
                    answer = script.pop(0) if script else 200
                    delay = server.delays.get(path, 0.0)
                if delay:
                    time.sleep(delay)
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send(status, json.dumps({"path": path, "status": status}).encode(), **{**headers, "Content-Type": "application/json"})

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def script(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next requests to ``path`` with these statuses (then 200)."""
        with self.lock:
            self.scripts[path] = list(answers)

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def counting_server() -> Iterator[CountingServer]:
    with CountingServer() as server:
        yield server


@contextmanager
def untrusted_tls_port(workdir: Path) -> Iterator[int]:
    """Yield the port of a listener on 127.0.0.1 that offers one TLS handshake with a self-signed certificate (needs `openssl`)."""
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve_one() -> None:
            conn, _ = listener.accept()
            try:
                context.wrap_socket(conn, server_side=True)
            except OSError:
                pass  # the client refuses the certificate
            finally:
                conn.close()

        threading.Thread(target=serve_one, daemon=True).start()
        yield listener.getsockname()[1]
