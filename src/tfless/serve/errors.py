"""Serving errors: a canonical status code (named as TF Serving and gRPC name them) and the
HTTP status that TF Serving's REST server sends for it."""

from __future__ import annotations

from ..errors import TflessError

HTTP_STATUS = {
    "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


class ServingError(TflessError):
    """A request the server answers with `{"error": message}` and an HTTP status."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS[code]


class ClientGone(ServingError):
    """The client closed the connection before its request was read: nothing to answer."""

    def __init__(self) -> None:
        super().__init__("CANCELLED", "the client disconnected before sending the whole request")


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def too_large(message: str) -> ServingError:
    return ServingError("RESOURCE_EXHAUSTED", message, http_status=413)
