"""Routes for admins: notices and their flags, the review queue, and the dashboard.

Admin tokens only (a force's or Key Adult's token is ``403``). Area scoping is described
in ``auth.authenticated_admin``: for now only admins of area ``all`` are served.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Annotated, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from encompass.api.app_keys import CONTAINER, METRICS
from encompass.api.auth import actor, authenticated_admin
from encompass.api.errors import ApiError, read_body
from encompass.domain.calendar import LONDON
from encompass.domain.status import NoticeStatus
from encompass.services.admin.monitoring import MAX_NOTICES, Dashboard, admin_notices, dashboard
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
    limit_text = request.query.get("limit", "200")
    # "²".isdigit() is True yet int("²") raises, as does int() of 5,000 digits.
    if (
        not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 9)
        or not 1 <= int(limit_text) <= MAX_NOTICES
    ):
        raise ApiError(400, "bad_request", f"limit must be a whole number from 1 to {MAX_NOTICES}")
    container = request.app[CONTAINER]
    notices = await admin_notices(
        container.sessions,
        container.clock,
        actor(admin),
        status=status,
        overdue=None if overdue_text is None else overdue_text == "true",
        limit=int(limit_text),
    )
    return web.json_response({"notices": notices})


@routes.get("/v1/admin/review")
async def get_review(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request)
    container = request.app[CONTAINER]
    items = await list_review(container.sessions, container.clock, actor(admin))
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
        )
    except ResolveRefused as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    request.app[METRICS].review_resolved.labels(done.resolution).inc()
    await refresh_review_metrics(request.app)
    return web.json_response(done.as_json())


@routes.get("/admin")
async def get_dashboard(request: web.Request) -> web.Response:
    admin = await authenticated_admin(request, allow_query=True)
    container = request.app[CONTAINER]
    figures = await dashboard(container.sessions, container.clock, actor(admin))
    await refresh_review_metrics(request.app)
    return web.Response(
        text=render_dashboard(figures),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            # The token may ride in the URL: never hand it to another site.
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


_STYLE: Final = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;color:#111}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #bbb;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#eee}.warn{color:#a00;font-weight:bold}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def _local(at: datetime | str) -> str:
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.astimezone(LONDON).strftime("%Y-%m-%d %H:%M")


def _table(headings: list[str], rows: list[list[object]], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_dashboard(figures: Dashboard) -> str:
    """The dashboard page: server-rendered, every value escaped, no script, no child data
    (review items by id, decision and age; the API gives the details)."""
    review = figures.review
    attention = [
        ("Overdue (not acknowledged by the day's start)", figures.overdue),
        ("Failed deliveries", figures.failed),
        (
            "Review queue",
            f"{review.items} item(s)"
            + (f", oldest waiting {_age(review.oldest_age_seconds)}" if review.items else ""),
        ),
        ("Unresolved alerts", len(figures.alerts)),
    ]
    items = [
        [
            i.type,
            i.id,
            i.incident_id,
            i.force_id,
            i.decision,
            f"{i.score:.2f}",
            len(i.candidates),
            (i.notice or {}).get("setting_id", ""),
            _age(i.age_seconds),
        ]
        for i in figures.review_items
    ]
    alerts = [
        [_local(a["created_at"]), a["kind"], a["audience"], a["notice_id"] or "", a["message"]]
        for a in figures.alerts
    ]
    warn = ' class="warn"' if figures.overdue or figures.failed or review.items else ""
    return "".join(
        [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            '<meta http-equiv="refresh" content="60"><title>Encompass admin</title>',
            f"<style>{_STYLE}</style></head><body><h1>Encompass</h1>",
            f"<p>As of {_e(_local(figures.at))} (UK time); refreshes every minute.</p>",
            f"<h2{warn}>Needs attention</h2>",
            _table(["what", "how many"], [[k, v] for k, v in attention], ""),
            "<h2>Notices by status</h2>",
            _table(["status", "notices"], [[k, v] for k, v in figures.by_status.items()], ""),
            "<h2>Review queue</h2>",
            _table(
                [
                    "type",
                    "item",
                    "incident",
                    "force",
                    "decision",
                    "score",
                    "candidates",
                    "setting",
                    "waiting",
                ],
                items,
                "Nothing waits for review.",
            ),
            "<h2>Alerts</h2>",
            _table(["raised", "kind", "for", "notice", "message"], alerts, "No open alerts."),
            "</body></html>",
        ]
    )
