"""HTTP/1.1 to Landfall's one address: h11 for the protocol, one kept-alive socket for the bytes.

Why not httpx: every CI deploy pays the CLI's start-up, and importing httpx (with httpcore, anyio's
pieces, idna, `email`, `urllib.request`) cost more than half of the ~150 ms that `landfall deploy
--wait` was allowed to add (bench/cli_overhead.py). The CLI sends one request at a time,
synchronously, to one host. h11 is the HTTP/1.1 state machine under httpcore (so under httpx):
framing, chunked bodies, keep-alive and `Connection: close` are its business; this module only
moves bytes through a socket. The standard library's `http.client` would do too, but it imports
`email` (header parsing) and `ssl` whatever the URL, about twice h11's import cost. On top of the
protocol, what httpx gave us, the way httpx does it:

- proxies from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, any case),
  read by `urllib.request`'s own functions, which are imported only when such a variable is set;
  `http://` proxies, with `user:password@` as `Proxy-Authorization`; HTTPS through one tunnels
  with CONNECT;
- TLS verified against `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else certifi's bundle when it
  is installed (httpx's default), else the system's store; `ssl` is never loaded for `http://`;
- a connect timeout (at most 10 s) apart from the read timeout of each request;
- the errors it raises tell apart "could not connect", "no answer in time" and "the connection
  broke", which is what the wait loop retries on (wait.py).

Subtle:
- One connection is kept for the life of the `Transport`: the webhook POST and the long-poll
  after it share it, as a CI job's curl or any HTTP client with a pool would. A reused
  connection that the server had already closed (it restarted, or dropped an idle socket) fails
  before an answer arrives; such a request is sent once more on a new connection when sending
  twice is harmless (GET, PUT, DELETE, or any request carrying an `Idempotency-Key`).
- Response and Proxy are plain classes: a dataclass is built when its module is imported, a
  cost every run would pay.
- An ASCII host name goes to the resolver as bytes: as a str, `getaddrinfo` first loads the
  `idna` codec (with `stringprep` and `unicodedata`), which only a non-ASCII name needs.
- `Accept-Encoding: identity`: answers come unencoded, nothing to inflate.
- Redirects are not followed (neither did the httpx client).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import h11

if TYPE_CHECKING:
    import ssl

CONNECT_TIMEOUT_MAX = 10.0
RESENDABLE = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
CHUNK = 65536


class _Stale(Exception):
    """A reused connection turned out closed before any of the answer arrived."""


class TransportError(Exception):
    """The request got no answer; `str()` says why, never what was sent."""


class ConnectFailed(TransportError):
    """No connection: refused, unknown host, unreachable network, TLS handshake refused."""


class TimedOutError(TransportError):
    """Connected (or connecting), but no answer within the timeout."""


class Dropped(TransportError):
    """The connection broke before the whole answer arrived."""


class ProxyUnsupported(TransportError):
    """A proxy variable names something other than an `http://` proxy."""


class Response:
    """An answer: its status, its headers (names in lower case; a repeated one's last value), its body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The decoded body; ValueError when it is not JSON."""
        return json.loads(self.content)


class Proxy:
    """An `http://` proxy: where it is, and the Proxy-Authorization value its URL's credentials make."""

    __slots__ = ("authorization", "host", "port")

    def __init__(self, host: str, port: int, authorization: str | None) -> None:
        self.host = host
        self.port = port
        self.authorization = authorization


def proxy_for(scheme: str, host: str) -> Proxy | None:
    """The proxy the environment names for `scheme://host`, or None (no variable, or NO_PROXY)."""
    if not any(key.lower().endswith("_proxy") for key in os.environ):
        return None  # the usual case, decided without importing urllib.request
    import urllib.request  # its rules for *_proxy and no_proxy, as Python's own clients read them

    proxies = urllib.request.getproxies_environment()
    # proxy_bypass_environment: NO_PROXY's rules (`*`, domain suffixes, host:port), environment
    # only; typeshed leaves it out, the standard library has had it since 3.0.
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ProxyUnsupported(
            f"only http:// proxies are supported ({scheme}_proxy names a {parts.scheme} one)"
        )
    authorization = None
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Proxy(parts.hostname, parts.port or 80, authorization)


def tls_context() -> ssl.SSLContext:
    """A verifying context: SSL_CERT_FILE / SSL_CERT_DIR, else certifi's bundle, else the system's."""
    import ssl

    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:
            return ssl.create_default_context()
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)


class Transport:
    """Requests to one base URL (`http://` or `https://`, maybe with a path prefix), one at a time."""

    def __init__(self, url: str, *, timeout: float = 30, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL must start with http:// or https:// and name a host")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.netloc = parts.netloc.rsplit("@", 1)[-1]
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Host": self.netloc, "Accept-Encoding": "identity", **(headers or {})}
        self._sock: socket.socket | None = None
        self._http = h11.Connection(h11.CLIENT)
        self._proxy: Proxy | None = None
        self._proxy_known = False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request and its whole answer; a TransportError when there is none."""
        target = self.prefix + path
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        sent = {**self.headers, **(headers or {})}
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
            sent["Content-Length"] = str(len(data))
        proxy = self.proxy()
        if proxy is not None and self.scheme == "http":
            target = f"http://{self.netloc}{target}"  # a plain-HTTP proxy is asked for the absolute URL
            if proxy.authorization:
                sent["Proxy-Authorization"] = proxy.authorization
        resendable = method.upper() in RESENDABLE or any(k.lower() == "idempotency-key" for k in sent)
        seconds = self.timeout if timeout is None else timeout
        reused = self._sock is not None
        message = h11.Request(method=method, target=target, headers=list(sent.items()))
        try:
            return self._exchange(message, data, seconds)
        except _Stale as exc:
            if not (reused and resendable):
                raise Dropped(f"the connection broke ({exc})") from None
        return self._exchange(message, data, seconds)  # once, on a new connection

    def proxy(self) -> Proxy | None:
        if not self._proxy_known:
            self._proxy = proxy_for(self.scheme, self.host)
            self._proxy_known = True
        return self._proxy

    def _connect(self, seconds: float) -> socket.socket:
        proxy = self.proxy()
        host, port = (proxy.host, proxy.port) if proxy else (self.host, self.port)
        connect_timeout = min(seconds, CONNECT_TIMEOUT_MAX)
        try:
            address = (_resolvable(host), port)
            sock = socket.create_connection(address, timeout=connect_timeout)  # type: ignore[arg-type]
        except TimeoutError:
            raise TimedOutError(f"no connection to {host}:{port} within {connect_timeout:g} s") from None
        except OSError as exc:  # refused, unknown host, unreachable
            raise ConnectFailed(_reason(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                if proxy is not None:
                    _tunnel(sock, f"{self.host}:{self.port}", proxy)
                sock = tls_context().wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            sock.close()
            raise TimedOutError(f"no TLS session with {self.host} within {connect_timeout:g} s") from None
        except OSError as exc:  # ssl.SSLError too: a certificate not trusted, a handshake refused
            sock.close()
            raise ConnectFailed(_reason(exc)) from None
        except TransportError:
            sock.close()
            raise
        return sock

    def _exchange(self, message: h11.Request, data: bytes, seconds: float) -> Response:
        if self._sock is None:
            self._sock = self._connect(seconds)
            self._http = h11.Connection(h11.CLIENT)
        sock, http = self._sock, self._http
        sock.settimeout(seconds)
        answered = False
        try:
            sock.sendall(
                http.send(message)
                + (http.send(h11.Data(data=data)) if data else b"")
                + http.send(h11.EndOfMessage())
            )
            status, headers, content = 0, {}, bytearray()
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(sock.recv(CHUNK))
                elif isinstance(event, h11.Response):
                    answered = True
                    status = event.status_code
                    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("closed before an answer")
                # an h11.InformationalResponse (100 Continue): the real answer follows
        except TimeoutError:
            self.close()
            raise TimedOutError(f"no answer within {seconds:g} s") from None
        except (h11.ProtocolError, OSError) as exc:
            self.close()
            if not answered:
                raise _Stale(type(exc).__name__) from None
            raise Dropped(f"the connection broke ({type(exc).__name__})") from None
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
        else:  # `Connection: close`, or a body that ends with the connection
            self.close()
        return Response(status, headers, bytes(content))


def _resolvable(host: str) -> str | bytes:
    return host.encode() if host.isascii() else host


def _tunnel(sock: socket.socket, authority: str, proxy: Proxy) -> None:
    """CONNECT through an HTTP proxy; the socket then carries TLS to Landfall itself."""
    http = h11.Connection(h11.CLIENT)
    headers = [("Host", authority)]
    if proxy.authorization:
        headers.append(("Proxy-Authorization", proxy.authorization))
    sock.sendall(http.send(h11.Request(method="CONNECT", target=authority, headers=headers)))
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(sock.recv(CHUNK))
        elif isinstance(event, h11.Response):
            if not 200 <= event.status_code < 300:
                raise ConnectFailed(f"the proxy refused the tunnel (HTTP {event.status_code})")
            return
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectFailed("the proxy closed the connection")


def _reason(exc: OSError) -> str:
    """What went wrong connecting, in the words of the system: `[Errno 111] Connection refused`."""
    return str(exc) or type(exc).__name__
