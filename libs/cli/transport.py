"""HTTP/1.1 to Landfall's one address over the standard library's `http.client`, kept alive.

Why not httpx: every CI deploy pays the CLI's start-up, and importing httpx (with httpcore, h11,
anyio's pieces, idna, `email`, `urllib.request`) cost more than half of the ~150 ms that
`landfall deploy --wait` was allowed to add (bench/cli_overhead.py). The CLI sends one request
at a time, synchronously, to one host; `http.client` does that, and this module adds only what
httpx gave us on top of it, the way httpx does it:

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
  connection that the server had already closed (it answered `Connection: close`, restarted, or
  dropped an idle socket) fails before an answer arrives; such a request is sent once more on a
  new connection when sending twice is harmless (GET, PUT, DELETE, or any request carrying an
  `Idempotency-Key`).
- No `Accept-Encoding` but http.client's `identity`: answers come unencoded, nothing to inflate.
- Redirects are not followed (neither did the httpx client).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

if TYPE_CHECKING:
    import ssl

CONNECT_TIMEOUT_MAX = 10.0
RESENDABLE = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# What a kept-alive connection that the server closed meanwhile looks like on the next request.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


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


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: http.client.HTTPMessage
    content: bytes

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        return self.content.decode(charset, errors="replace")

    def json(self) -> Any:
        """The decoded body; ValueError when it is not JSON."""
        return json.loads(self.content)


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header's value


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
        self.headers = dict(headers or {})
        self._conn: http.client.HTTPConnection | None = None
        self._proxy: Proxy | None = None
        self._proxy_known = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        proxy = self.proxy()
        if proxy is not None and self.scheme == "http":
            target = f"http://{self.netloc}{target}"  # a plain-HTTP proxy is asked for the absolute URL
            if proxy.authorization:
                sent["Proxy-Authorization"] = proxy.authorization
        resendable = method.upper() in RESENDABLE or any(k.lower() == "idempotency-key" for k in sent)
        seconds = self.timeout if timeout is None else timeout
        reused = self._conn is not None
        try:
            return self._exchange(method, target, data, sent, seconds)
        except STALE as exc:
            self.close()
            if not (reused and resendable):
                raise Dropped(f"the connection broke ({type(exc).__name__})") from None
        return self._exchange(method, target, data, sent, seconds)  # once, on a new connection

    def proxy(self) -> Proxy | None:
        if not self._proxy_known:
            self._proxy = proxy_for(self.scheme, self.host)
            self._proxy_known = True
        return self._proxy

    def _connection(self, seconds: float) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        proxy = self.proxy()
        host, port = (proxy.host, proxy.port) if proxy else (self.host, self.port)
        connect_timeout = min(seconds, CONNECT_TIMEOUT_MAX)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=tls_context())
            if proxy:
                tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                conn.set_tunnel(self.host, self.port, headers=tunnel)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            conn.connect()
        except TimeoutError:
            conn.close()
            raise TimedOutError(f"no connection to {host}:{port} within {connect_timeout:g} s") from None
        except OSError as exc:  # refused, unknown host, unreachable, TLS refused (ssl.SSLError)
            conn.close()
            raise ConnectFailed(_reason(exc)) from None
        self._conn = conn
        return conn

    def _exchange(
        self, method: str, target: str, data: bytes | None, headers: dict[str, str], seconds: float
    ) -> Response:
        conn = self._connection(seconds)
        assert conn.sock is not None
        conn.sock.settimeout(seconds)
        try:
            conn.request(method, target, body=data, headers=headers)
            answer = conn.getresponse()
            content = answer.read()
        except STALE:
            raise
        except TimeoutError:
            self.close()
            raise TimedOutError(f"no answer within {seconds:g} s") from None
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise Dropped(f"the connection broke ({type(exc).__name__})") from None
        if answer.will_close:
            self.close()
        return Response(answer.status, answer.headers, content)


def _reason(exc: OSError) -> str:
    """What went wrong connecting, in the words of the system: `[Errno 111] Connection refused`."""
    return str(exc) or type(exc).__name__
