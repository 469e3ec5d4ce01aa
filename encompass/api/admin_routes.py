"""The admins' JSON API: notices and their flags, the review queue, Today's figures, alerts,
dead letters and incident timelines (the console's pages, ``admin_pages.py``, show the same).

Admin tokens only (a force's or Key Adult's token is ``403``). Each use case is given the
admin's area (``services/admin/scope.py``) and shows or changes nothing outside it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from encompass.api.app_keys import CONTAINER, METRICS
from encompass.api.auth import actor, authenticated_admin
from encompass.api.errors import ApiError, read_body
from encompass.domain.status import NoticeStatus
from encompass.services.admin.alerts import MAX_ALERTS, AlertRefused, act_on_alert, list_alerts
from encompass.services.admin.dead_letters import (
    MAX_SHOWN,
    DeadLetterRefused,
    list_dead_letters,
    replay,
)
from encompass.services.admin.monitoring import MAX_NOTICES, admin_notices, notices_csv
from encompass.services.admin.scope import Area
from encompass.services.admin.timeline import incident_timeline
from encompass.services.admin.today import today
from encompass.services.matching.review_queue import (
    ResolveRefused,
    list_review,
    queue_summary,
    resolve,
)

routes = web.RouteTableDef()
MAX_ID: Final = 64


class ResolveRequest(BaseModel):
    """``POST /v1/admin/review/{id}/resolve``: exactly one of ``setting_id`` or
    ``local_authority_contact: true`` (a child on no roll)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    setting_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The setting the child attends; the notice is released by "
        "the rule from the time the child was reported.",
        examples=["URN100001"],
    )
    local_authority_contact: bool = Field(
        default=False,
        description="True for a child on no roll: resolved to the local authority's contact.",
        examples=[False],
    )
    la_code: Annotated[str, StringConstraints(pattern=r"^[EWSN][0-9]{8}$")] | None = Field(
        default=None,
        description="With local_authority_contact: the authority (ONS code) whose contact "
        "receives the notice; by default the admin's own area.",
        examples=["E06000020"],
    )


async def refresh_review_metrics(app: web.Application) -> None:
    """Set the review-queue gauges from the database (on each scrape and review call)."""
    container, metrics = app[CONTAINER], app[METRICS]
    async with container.sessions() as session:
        summary = await queue_summary(session, container.clock.now())
    metrics.review_items.set(summary.items)
    metrics.review_oldest_age.set(summary.oldest_age_seconds)


@routes.get("/v1/admin/notices")
async def get_admin_notices(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    status_text = request.query.get("status")
    try:
        status = NoticeStatus(status_text) if status_text else None
    except ValueError:
        raise ApiError(
            400, "bad_request", "status must be one of " + ", ".join(s.value for s in NoticeStatus)
        ) from None
    overdue_text = request.query.get("overdue")
    if overdue_text not in (None, "true", "false"):
        raise ApiError(400, "bad_request", "overdue must be true or false")
    limit, offset = _paging(request, 200, MAX_NOTICES)
    setting_id = request.query.get("setting_id") or None
    if setting_id is not None and len(setting_id) > MAX_ID:
        raise ApiError(400, "bad_request", f"setting_id is at most {MAX_ID} characters")
    days = {}
    for name in ("since", "until"):
        try:
            days[name] = date.fromisoformat(request.query[name]) if name in request.query else None
        except ValueError:
            raise ApiError(400, "bad_request", f"{name} must be a date YYYY-MM-DD") from None
    output = request.query.get("format", "json")
    if output not in ("json", "csv"):
        raise ApiError(400, "bad_request", "format must be json or csv")
    container = request.app[CONTAINER]
    notices = await admin_notices(
        container.sessions,
        container.clock,
        actor(admin),
        status=status,
        overdue=None if overdue_text is None else overdue_text == "true",
        setting_id=setting_id,
        since=days["since"],
        until=days["until"],
        limit=limit,
        offset=offset,
        area=Area.of(admin),
    )
    if output == "csv":
        return web.Response(
            text=notices_csv(notices),
            content_type="text/csv",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )
    return web.json_response({"notices": notices})


@routes.get("/v1/admin/review")
async def get_review(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    container = request.app[CONTAINER]
    items = await list_review(
        container.sessions, container.clock, actor(admin), area=Area.of(admin)
    )
    await refresh_review_metrics(request.app)
    return web.json_response(
        {"items": [item.as_json() for item in items]}, headers={"Cache-Control": "no-store"}
    )


@routes.post("/v1/admin/review/{item_id}/resolve")
async def post_resolve(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    item_id = request.match_info["item_id"]
    if len(item_id) > MAX_ID:
        raise ApiError(404, "not_found", "no such review item")
    body = await read_body(
        request, ResolveRequest, code="invalid_resolution", what="the resolution"
    )
    container = request.app[CONTAINER]
    try:
        done = await resolve(
            container.sessions,
            container.clock,
            actor(admin),
            item_id,
            setting_id=body.setting_id,
            local_authority_contact=body.local_authority_contact,
            la_code=body.la_code,
            area=Area.of(admin),
        )
    except ResolveRefused as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    request.app[METRICS].review_resolved.labels(done.resolution).inc()
    await refresh_review_metrics(request.app)
    return web.json_response(done.as_json())


def _paging(request: web.Request, default: int, most: int) -> tuple[int, int]:
    """``limit`` and ``offset`` from the query: whole numbers, limit 1..most."""

    def number(name: str, fallback: int, low: int, high: int) -> int:
        text = request.query.get(name, str(fallback))
        # "²".isdigit() is True yet int("²") raises, as does int() of 5,000 digits.
        if not (text.isascii() and text.isdigit() and len(text) <= 9) or not (
            low <= int(text) <= high
        ):
            raise ApiError(
                400, "bad_request", f"{name} must be a whole number from {low} to {high}"
            )
        return int(text)

    return number("limit", default, 1, most), number("offset", 0, 0, 10**9)


@routes.get("/v1/admin/today")
async def get_today(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    container = request.app[CONTAINER]
    figures = await today(container.sessions, container.clock, actor(admin), area=Area.of(admin))
    return web.json_response(figures.as_json(), headers={"Cache-Control": "no-store"})


@routes.get("/v1/admin/alerts")
async def get_alerts(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    limit, offset = _paging(request, 100, MAX_ALERTS)
    state = request.query.get("state", "open")
    if state not in ("open", "all"):
        raise ApiError(400, "bad_request", "state must be open or all")
    container = request.app[CONTAINER]
    found = await list_alerts(
        container.sessions,
        container.clock,
        actor(admin),
        area=Area.of(admin),
        open_only=state == "open",
        limit=limit,
        offset=offset,
    )
    return web.json_response(
        {"total": found.total, "alerts": [a.as_json() for a in found.alerts]},
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/v1/admin/alerts/{alert_id}/{action:acknowledge|resolve}")
async def post_alert(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    alert_id = request.match_info["alert_id"]
    if not (alert_id.isascii() and alert_id.isdigit() and len(alert_id) <= 12):
        raise ApiError(404, "not_found", "no such alert")
    container = request.app[CONTAINER]
    try:
        done = await act_on_alert(
            container.sessions,
            container.clock,
            actor(admin),
            int(alert_id),
            request.match_info["action"],
            area=Area.of(admin),
        )
    except AlertRefused as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return web.json_response(done.as_json())


@routes.get("/v1/admin/dead-letters")
async def get_dead_letters(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    limit, _ = _paging(request, 50, MAX_SHOWN)
    container = request.app[CONTAINER]
    found = await list_dead_letters(
        container.sessions,
        container.broker,
        container.clock,
        actor(admin),
        limit=limit,
        area=Area.of(admin),
    )
    return web.json_response(
        {"queues": {q: [d.as_json() for d in letters] for q, letters in found.items()}},
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/v1/admin/dead-letters/{queue}/{message_id}/replay")
async def post_replay(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    container = request.app[CONTAINER]
    try:
        letter = await replay(
            container.sessions,
            container.broker,
            container.clock,
            actor(admin),
            request.match_info["queue"],
            request.match_info["message_id"],
            area=Area.of(admin),
        )
    except DeadLetterRefused as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return web.json_response({"replayed": letter.as_json()})


@routes.get("/v1/admin/incidents/timeline")
async def get_timeline(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    force = request.query.get("force", "").strip().upper()
    ref = request.query.get("incident_ref", "").strip()
    if not force or not ref or len(force) > 32 or len(ref) > 64:
        raise ApiError(400, "bad_request", "give force and incident_ref")
    container = request.app[CONTAINER]
    found = await incident_timeline(
        container.sessions,
        container.clock,
        actor(admin),
        force_id=force,
        incident_ref=ref,
        area=Area.of(admin),
    )
    if found is None:
        raise ApiError(404, "not_found", "no such incident in your area")
    return web.json_response(found.as_json(), headers={"Cache-Control": "no-store"})
