"""The API client: one base URL (`LANDFALL_URL`), a bearer token, problem documents → exit codes.

Every call goes to `$LANDFALL_URL/v1/...`; which service answers is the server's business (an
Ingress, or the local stack's front door). An error answer becomes a `CliError` whose message
holds the problem's `detail`, each field error and what to do next. Nothing the caller sent is
ever repeated in a message: the token, passwords and docker configs stay out of every output.
The HTTP itself (one kept-alive connection, proxies, TLS, timeouts) is transport.py's.
"""

from __future__ import annotations

from typing import Any, Final, TypedDict, Unpack

from libs.cli.errors import NOT_FOUND, UNAVAILABLE, USAGE, CliError, exit_code_for_status
from libs.cli.transport import ConnectFailed, Dropped, Response, TimedOutError, Transport, TransportError

CI_TOKEN_PREFIX: Final = "lfci_"
USER_AGENT: Final = "landfall-cli/1"
# Errors worth retrying while following a deployment: the service restarts, a proxy in between
# has no upstream for a moment, or the network drops the long-poll.
TRANSIENT_STATUSES: Final = frozenset({429, 502, 503, 504})
TRANSIENT_ERRORS: Final = (ConnectFailed, TimedOutError, Dropped)


class Request(TypedDict, total=False):
    """What a request may carry besides its method and path (`Api.send`, `Api.call`)."""

    body: Any  # sent as JSON when not None
    params: dict[str, Any] | None
    headers: dict[str, str] | None
    timeout: float | None  # seconds, instead of the client's own


def is_ci_token(token: str | None) -> bool:
    return bool(token) and str(token).startswith(CI_TOKEN_PREFIX)


class ApiError(CliError):
    """An HTTP error answer, with the problem document when the server sent one."""

    def __init__(
        self, status: int, problem: dict[str, Any], retry_after: str | None, hint: str | None = None
    ) -> None:
        self.status = status
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(exit_code_for_status(status), format_problem(status, problem, retry_after, hint))

    @property
    def route_missing(self) -> bool:
        """The server has no such endpoint at all (not: the object named in the path is unknown).

        aiohttp's own 404/405 for an unmatched route carries no domain detail ("404: Not Found"),
        whereas an unknown object's problem says what does not exist.
        """
        if self.status == 405:
            return True
        if self.status != 404:
            return False
        detail = str(self.problem.get("detail") or "").strip().lower()
        return detail in ("", "not found", "404: not found")


def hint_for(status: int, retry_after: str | None) -> str:
    if status == 401:
        return "check --token (or LANDFALL_TOKEN), or run `landfall login`"
    if status == 403:
        return "this token may not do that: use a token with the role the detail names"
    if status == 404:
        return "check the name (`landfall components list`, `landfall registries list`) and --org/--project"
    if status == 405:
        return "this Landfall does not have the endpoint: upgrade the server or check --url"
    if status in (409, 413, 415, 422, 400):
        return "fix the input named above and run the command again"
    if status == 429:
        return f"slow down; retry after {retry_after or 'a few'} s"
    if status >= 500:
        return f"retry; Retry-After: {retry_after} s" if retry_after else "retry in a moment"
    return "see the detail above"


def format_problem(
    status: int, problem: dict[str, Any], retry_after: str | None, hint: str | None = None
) -> str:
    title = str(problem.get("title") or _phrase(status))
    detail = str(problem.get("detail") or "").strip()
    lines = [f"error: {title} (HTTP {status})" + (f": {detail}" if detail else "")]
    for err in problem.get("errors") or []:
        if isinstance(err, dict):
            lines.append(f"  - {err.get('field', '?')}: {err.get('message', '')}")
    lines.append(f"  next: {hint or hint_for(status, retry_after)}")
    return "\n".join(lines)


def _phrase(status: int) -> str:
    from http import HTTPStatus  # only for an error: its enum costs every other run a millisecond

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _problem_of(response: Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return {"detail": text[:300]} if text else {}
    return body if isinstance(body, dict) else {}


class Api:
    """A thin synchronous client: the CLI does one thing at a time."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self.http = Transport(self.url, timeout=timeout, headers=headers)
        except ValueError:
            raise CliError(
                USAGE, "error: --url (or LANDFALL_URL) must start with http:// or https:// and name a host"
            ) from None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def ci(self) -> bool:
        return is_ci_token(self.token)

    def send(self, method: str, path: str, **request: Unpack[Request]) -> Response:
        """One request; connection failures raise TransportErrors (the caller decides about retries)."""
        return self.http.request(method, path, **request)

    def call(self, method: str, path: str, *, hint_404: str | None = None, **request: Unpack[Request]) -> Any:
        """One request that must succeed: the decoded JSON answer (None for 204), else a CliError."""
        try:
            response = self.send(method, path, **request)
        except TimedOutError as exc:
            raise CliError(UNAVAILABLE, f"error: no answer from {self.url} in time ({exc}); retry") from None
        except TransportError as exc:
            raise unreachable(self.url, exc) from None
        return self.decode(response, hint_404=hint_404)

    def call_new_endpoint(self, what: str, method: str, path: str, **request: Unpack[Request]) -> Any:
        """`call` for an endpoint an older server may lack: its own 404/405 for the route says so (exit 4)."""
        try:
            return self.call(method, path, **request)
        except ApiError as exc:
            if exc.route_missing:
                raise endpoint_missing(what) from None
            raise

    def decode(self, response: Response, *, hint_404: str | None = None) -> Any:
        if response.status_code >= 400:
            raise ApiError(
                response.status_code,
                _problem_of(response),
                response.headers.get("retry-after"),
                hint_404 if response.status_code == 404 else None,
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                UNAVAILABLE,
                f"error: {self.url} answered HTTP {response.status_code} with something that is not JSON; "
                "check --url (it must be Landfall's one address, LANDFALL_URL)",
            ) from None


def unreachable(url: str, exc: Exception) -> CliError:
    return CliError(
        UNAVAILABLE,
        f"error: cannot reach Landfall at {url} ({type(exc).__name__}: {exc})\n"
        "  next: is it running? check --url (or LANDFALL_URL); retry in a moment",
    )


def endpoint_missing(what: str) -> CliError:
    return CliError(
        NOT_FOUND,
        f"error: this Landfall does not have the {what} endpoint yet (its server answered that the route "
        "does not exist)\n  next: upgrade the server, or check --url",
    )
