"""The CLI's HTTP (libs/cli/transport.py) against a real HTTP/1.1 server on a local socket.

`Peer` is a small `http.server` in a thread that answers every request with JSON saying what it
received (method, target, headers) and on which connection: enough to see keep-alive, a server
that closes, chunked answers, a proxy's absolute URL and its credentials, a path prefix and a
timeout; with a certificate (made by the `openssl` command) it speaks TLS, and `Tunnel`, a proxy
that only does CONNECT, carries HTTPS to it as a corporate proxy would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from libs.cli.client import Api
from libs.cli.errors import UNAVAILABLE, USAGE, CliError
from libs.cli.transport import ConnectFailed, Dropped, TimedOutError, Transport, proxy_for


class Peer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.chunked = False  # answer with Transfer-Encoding: chunked instead of Content-Length
        self.connections = 0
        self.close_after_answer = False  # close the socket without saying so (a restart, an idle timeout)
        self.release = threading.Event()  # GET …/slow answers only once this is set
        self.answer: Any = None  # a fixed answer instead of the echo

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Peer

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1
        self.connection_number = self.server.connections

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        if self.path.endswith("/slow"):
            self.server.release.wait(5)
        doc = self.server.answer or {
            "method": self.command,
            "target": self.path,
            "connection": self.connection_number,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": json.loads(body) if body else None,
        }
        raw = json.dumps(doc).encode()
        if self.server.chunked:
            half = len(raw) // 2
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (raw[:half], raw[half:])) + b"0\r\n\r\n"
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            self.wfile.write(head.encode() + chunks)
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
            self.wfile.write(head.encode() + raw)
        if self.server.close_after_answer:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Peer]:
    server = Peer(tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    with serving() as server:
        yield server


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(key)


def test_requests_share_one_connection_and_carry_json_and_headers(peer: Peer) -> None:
    http = Transport(peer.url + "/base/", headers={"Authorization": "Bearer t"})
    posted = http.request("POST", "/v1/x", body={"tag": "1.0"}, headers={"Idempotency-Key": "k"}).json()
    polled = http.request("GET", "/v1/x/1", params={"wait": 5}).json()
    assert posted["target"] == "/base/v1/x"
    assert posted["body"] == {"tag": "1.0"}
    assert posted["headers"]["content-type"] == "application/json"
    assert posted["headers"]["idempotency-key"] == "k"
    assert posted["headers"]["authorization"] == "Bearer t"
    assert polled["target"] == "/base/v1/x/1?wait=5"
    assert polled["connection"] == posted["connection"]  # kept alive: the long-poll costs no new connection
    assert peer.connections == 1


def test_a_connection_the_server_closed_is_replaced_for_a_request_safe_to_resend(peer: Peer) -> None:
    peer.close_after_answer = True
    http = Transport(peer.url)
    first = http.request("GET", "/a").json()
    again = http.request("GET", "/b").json()
    keyed = http.request("POST", "/c", body={}, headers={"Idempotency-Key": "k"}).json()
    assert again["connection"] != first["connection"]
    assert keyed["connection"] != again["connection"]
    assert peer.connections == 3


def test_refused_timed_out_and_bad_urls_say_so(peer: Peer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectFailed, match="refused"):
        Transport(f"http://127.0.0.1:{port}").request("GET", "/")
    with pytest.raises(CliError) as err:
        Api(f"http://127.0.0.1:{port}", "lfk_secret").call("GET", "/v1/x")
    assert err.value.code == UNAVAILABLE
    assert "cannot reach Landfall" in err.value.message
    assert "lfk_secret" not in err.value.message

    with pytest.raises(TimedOutError):
        Transport(peer.url).request("GET", "/slow", timeout=0.2)
    with pytest.raises(CliError) as err:
        Api("localhost:8080", None)
    assert err.value.code == USAGE


def test_a_proxy_from_the_environment_gets_the_absolute_url_and_its_credentials(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_port = peer.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://me:p%40ss@127.0.0.1:{proxy_port}")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    seen = Transport("http://landfall.example:8080/lf").request("GET", "/v1/x").json()
    assert seen["target"] == "http://landfall.example:8080/lf/v1/x"
    assert seen["headers"]["host"] == "landfall.example:8080"
    assert seen["headers"]["proxy-authorization"] == "Basic bWU6cEBzcw=="  # me:p@ss
    assert proxy_for("http", "internal.example") is None
    assert proxy_for("http", "api.corp.example") is None
    assert proxy_for("https", "landfall.example") is None  # only HTTP_PROXY is set
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy_port}")
    https = proxy_for("https", "landfall.example")
    assert https is not None
    assert (https.port, https.authorization) == (proxy_port, None)


def test_a_dropped_answer_is_not_resent_when_sending_twice_could_do_twice(peer: Peer) -> None:
    peer.close_after_answer = True
    http = Transport(peer.url)
    http.request("GET", "/warm")
    with pytest.raises(Dropped):
        http.request("POST", "/v1/orgs/default/registries", body={"display_name": "x"})
    assert peer.connections == 1  # the POST met the closed connection and was not sent again


def test_chunked_answers_are_read_whole(peer: Peer) -> None:
    peer.chunked = True
    http = Transport(peer.url)
    first = http.request("GET", "/v1/a").json()
    second = http.request("GET", "/v1/b").json()
    assert (first["target"], second["target"]) == ("/v1/a", "/v1/b")
    assert peer.connections == 1


class Tunnel(socketserver.ThreadingTCPServer):
    """An HTTP proxy that does only CONNECT; `heads` are the requests it was sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        self.heads: list[str] = []


class _TunnelHandler(socketserver.BaseRequestHandler):
    server: Tunnel

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.request.recv(4096)
        self.server.heads.append(head.decode())
        host, port = head.split()[1].decode().rsplit(":", 1)
        with socket.create_connection((host, int(port))) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            back.start()
            _pipe(self.request, upstream)
            back.join(5)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_is_verified_against_ssl_cert_file_and_tunnels_through_a_proxy(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serving(tls) as peer:
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            Transport(peer.url).request("GET", "/v1/x")  # a certificate nobody vouched for

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        http = Transport(peer.url)
        first = http.request("GET", "/v1/x").json()
        assert first["target"] == "/v1/x"
        assert http.request("GET", "/v1/y").json()["connection"] == first["connection"]  # kept alive

        proxy = Tunnel()
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            monkeypatch.setenv("HTTPS_PROXY", f"http://me:secret@127.0.0.1:{proxy.server_address[1]}")
            through = Transport(peer.url).request("GET", "/v1/z").json()
        finally:
            proxy.shutdown()
            proxy.server_close()
        assert through["target"] == "/v1/z"
        assert through["headers"]["host"] == f"127.0.0.1:{peer.server_address[1]}"
        (connect,) = proxy.heads
        assert connect.startswith(f"CONNECT 127.0.0.1:{peer.server_address[1]} HTTP/1.1")
        assert "Proxy-Authorization: Basic bWU6c2VjcmV0" in connect
