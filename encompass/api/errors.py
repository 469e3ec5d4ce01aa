"""Every HTTP error is JSON ``{"error": {"code", "message"}}``; never a stack trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from encompass.adapters.db.engine import changed_concurrently
from encompass.adapters.unavailable import unavailable
from encompass.strict_json import JsonRefused, parse_json

log = structlog.get_logger()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    if status == 503:
        # A 503 is always "the database or the broker is away": say when to try again.
        headers = {"Retry-After": RETRY_AFTER, **(headers or {})}
    return web.json_response({"error": body}, status=status, headers=headers)


RETRY_AFTER = "5"  # seconds; a broker or database restart takes about that long


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorised",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
# Headers of aiohttp's own errors that the JSON error must keep (RFC 9110 requires Allow
# on a 405).
_KEPT_HEADERS = ("Allow", "Retry-After")


def _route(request: web.Request) -> str:
    """The route's pattern (``/enrol/{token}``), not the path: a path may hold a secret."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return error_response(exc.status, code, exc.reason, headers=kept or None)
    except Exception as exc:
        if changed_concurrently(exc):
            # Another writer changed the same notice first (see tables.Notice): safe to retry.
            return error_response(
                409, "conflict", "the notice changed while this request was handled; retry"
            )
        if (dependency := unavailable(exc)) is not None:
            log.warning(
                "http.unavailable",
                path=_route(request),
                dependency=dependency,
                error=type(exc).__name__,
            )
            return error_response(
                503,
                "unavailable",
                f"the {dependency} is unavailable; retry after the time in Retry-After",
            )
        log.exception("http.unhandled", path=_route(request), method=request.method)
        return error_response(500, "internal", "an internal error occurred; it has been logged")


Model = TypeVar("Model", bound=BaseModel)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Where and why, never echoing the submitted values back."""
    return [
        {
            "field": ".".join(str(p) for p in e["loc"]) or "body",
            "problem": str(e["msg"]).removeprefix("Value error, "),
        }
        for e in exc.errors()
    ]


def require_json(request: web.Request) -> None:
    """ApiError 415 ``unsupported_media_type`` unless the body is declared
    ``application/json`` (charset, if given, UTF-8)."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as 'Content-Type: application/json' (UTF-8)",
        )


async def read_body(
    request: web.Request,
    model: type[Model],
    *,
    code: str,
    what: str,
    context: dict[str, Any] | None = None,
) -> Model:
    """The request's JSON body validated as ``model``: ``ApiError`` 415 when it is not
    declared JSON, 400 when it is not strict JSON (``invalid_json``, ``too_deep``,
    ``number_too_large``, ``duplicate_key``, ``invalid_characters``: see
    ``strict_json.parse_json``), 422 ``code`` ("``what`` is not valid", with details)
    otherwise."""
    require_json(request)
    try:
        data: Any = parse_json(await request.read())
    except JsonRefused as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ApiError(422, code, f"{what} is not valid", validation_details(exc)) from None
