"""API errors as the apiserver renders them: `Status` objects, never bare text.

Clients (kubernetes_asyncio, kubectl) decide what to do from `reason` and `code`
(`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...), so every refusal anywhere in
the sandbox is an `ApiError` and is answered with the same body a real cluster sends.
"""

from __future__ import annotations

from aiohttp import web

from libs.devstack.sandbox.values import JsonDict


def status_body(code: int, reason: str, message: str, details: JsonDict | None = None) -> JsonDict:
    body: JsonDict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error the apiserver would answer with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JsonDict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> JsonDict:
        return status_body(self.code, self.reason, self.message, self.details)

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def gone_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")
