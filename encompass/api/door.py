"""What every request meets before a route: the rate limits, clean characters, no banner.

- Rate limits: a token bucket per client address and one per credential (the SHA-256 of
  the bearer token, never the token), from ``ENCOMPASS_RATE_LIMIT_*``; over either, ``429
  rate_limited`` with ``Retry-After``. The address is the TCP peer: behind a reverse proxy
  every caller shares the proxy's address, so raise ``ENCOMPASS_RATE_LIMIT_ADDRESS`` there
  (or set it to 0) and let the credential limit do the work.
- A path or query holding NUL or a lone surrogate is ``400 invalid_characters``: the
  database cannot store or compare it, and no id of ours contains one.
- Responses carry no ``Server`` version banner.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web, web_response

from encompass.api.app_keys import METRICS
from encompass.api.errors import ApiError
from encompass.config import Settings
from encompass.domain.rate_limit import Limit, RateLimiter, retry_after_header
from encompass.strict_json import bad_characters

SERVER_NAME = "Encompass"


@dataclass
class Limiters:
    """The app's two rate limiters."""

    address: RateLimiter
    credential: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiters:
        return cls(
            address=RateLimiter(
                Limit(settings.rate_limit_address, settings.rate_limit_address_burst)
            ),
            credential=RateLimiter(
                Limit(settings.rate_limit_credential, settings.rate_limit_credential_burst)
            ),
        )


LIMITERS = web.AppKey("limiters", Limiters)


def _credential_key(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).hexdigest()


def _refuse(request: web.Request, which: str, wait: float) -> ApiError:
    request.app[METRICS].rate_limited.labels(which).inc()
    return ApiError(
        429,
        "rate_limited",
        f"too many requests from this {which}; retry after the time in Retry-After",
        headers={"Retry-After": retry_after_header(wait)},
    )


@web.middleware
async def door(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Rate limits and character checks, before any route runs (inside ``json_errors``)."""
    limiters, now = request.app[LIMITERS], time.monotonic()
    wait = limiters.address.take(request.remote or "?", now)
    if wait:
        raise _refuse(request, "address", wait)
    credential = _credential_key(request)
    if credential is not None:
        wait = limiters.credential.take(credential, now)
        if wait:
            raise _refuse(request, "credential", wait)
    if bad_characters(request.path) or any(
        bad_characters(k) or bad_characters(v) for k, v in request.query.items()
    ):
        raise ApiError(400, "invalid_characters", "the path or query holds NUL or a lone surrogate")
    return await handler(request)


async def hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: name the service, not the versions of Python and aiohttp."""
    response.headers["Server"] = SERVER_NAME


def install(app: web.Application, settings: Settings) -> None:
    """Give ``app`` its rate limiters and the banner hook (the middleware is passed to
    ``web.Application`` by ``create_app``)."""
    app[LIMITERS] = Limiters.from_settings(settings)
    app.on_response_prepare.append(hide_server_version)
    # aiohttp answers requests it cannot parse (a bad request line, a byte that is not
    # allowed in a URL) itself, before any middleware or signal, with the default banner
    # "Python/3.x aiohttp/3.x". That default is this module-level name; one process serves
    # one app, so replacing it process-wide is what we want.
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
