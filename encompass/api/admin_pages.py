"""The admin console in a browser: sign-in, *Today*, review, alerts, dead letters,
incident timelines and notices.

Server-rendered (``web/templates/admin/``), plain HTML that works without JavaScript.
Every page needs a signed-in admin session (else ``303`` to ``/admin/login``); every form
posts the session's CSRF token, and a POST without it is refused (``403 csrf_failed``).
After an action the browser is sent back to the page (``303``, post/redirect/get) with a
fixed message, so reloading never repeats it. Each use case is given the admin's area:
nothing outside it is shown or changed. No page refreshes itself.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any, Final

from aiohttp import web

from encompass.adapters.db.tables import Admin
from encompass.api.app_keys import CONTAINER, METRICS
from encompass.api.auth import actor
from encompass.api.errors import ApiError
from encompass.api.web_session import (
    ADMIN,
    CSRF_FIELD,
    clear_session_cookie,
    cookie_value,
    current_session,
    require_csrf,
    set_session_cookie,
)
from encompass.domain.calendar import LONDON
from encompass.domain.status import NoticeStatus
from encompass.services.access.web_sessions import WebSession
from encompass.services.admin.alerts import AlertRefused, act_on_alert, list_alerts
from encompass.services.admin.dead_letters import (
    DeadLetterRefused,
    list_dead_letters,
    replay,
)
from encompass.services.admin.directory_view import setting_names, settings_of
from encompass.services.admin.monitoring import admin_notices, notices_csv
from encompass.services.admin.scope import Area
from encompass.services.admin.sign_in import admin_of, sign_in, sign_out
from encompass.services.admin.timeline import incident_timeline
from encompass.services.admin.today import FAILURE_THRESHOLD, today
from encompass.services.matching.review_queue import ResolveRefused, list_review, resolve
from encompass.web.render import PAGE_HEADERS, render

routes = web.RouteTableDef()

LOGIN_CSRF_COOKIE: Final = "encompass_login"
# The messages shown after an action, by a fixed key: nothing from the request is echoed.
DONE: Final = {
    "resolved": "The review item was resolved. Its notice is scheduled.",
    "acknowledged": "The alert was acknowledged: it shows you are dealing with it.",
    "closed": "The alert was resolved.",
    "replayed": "The dead letter was sent back to its queue.",
    "signed_out": "You have signed out.",
}
NAV: Final = (
    ("today", "/admin", "Today"),
    ("review", "/admin/review", "Review"),
    ("alerts", "/admin/alerts", "Alerts"),
    ("dead", "/admin/dead-letters", "Dead letters"),
    ("incidents", "/admin/incidents", "Incident timeline"),
    ("notices", "/admin/notices", "Notices"),
)


class Signed:
    """The signed-in admin of a page request, their session and area."""

    def __init__(self, admin: Admin, session: WebSession) -> None:
        self.admin, self.session, self.area = admin, session, Area.of(admin)
        self.actor = actor(admin)


async def signed_in(request: web.Request) -> Signed:
    """The admin signed in on this browser, or a redirect to the sign-in page."""
    found = await current_session(request, ADMIN)
    admin = None if found is None else await admin_of(request.app[CONTAINER].sessions, found)
    if found is None or admin is None:
        raise web.HTTPSeeOther("/admin/login")
    return Signed(admin, found)


async def posted(request: web.Request) -> tuple[Signed, dict[str, str]]:
    """A form post from a signed-in admin, its CSRF token checked; the text fields."""
    who = await signed_in(request)
    form = await request.post()
    require_csrf(who.session, _str(form.get(CSRF_FIELD)))
    return who, {k: v for k, v in form.items() if isinstance(v, str)}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def page(
    request: web.Request, who: Signed, template: str, current: str, **context: Any
) -> web.Response:
    done = DONE.get(request.query.get("done", ""))
    return render(
        request,
        template,
        status=int(context.pop("status", 200)),
        admin=who.admin,
        csrf_token=who.session.csrf_token,
        nav=NAV,
        current=current,
        done=done,
        local=_local,
        age=_age,
        **context,
    )


def _local(at: datetime | str | None) -> str:
    if at is None:
        return ""
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.astimezone(LONDON).strftime("%d %b %Y %H:%M")


def _age(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


# --- sign-in ------------------------------------------------------------------------------


@routes.get("/admin/login")
async def get_login(request: web.Request) -> web.Response:
    return _login_page(request)


def _login_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    # Before a session there is no session CSRF token: a random value in a cookie and in the
    # form must match (double submit), so another site cannot sign a browser in.
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "admin/login.html",
        status=status,
        title="Sign in",
        login_csrf=token,
        error=error,
        done=DONE.get(request.query.get("done", "")),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/admin/login",
        httponly=True,
        samesite="Strict",
        max_age=3600,
    )
    return response


@routes.post("/admin/login")
async def post_login(request: web.Request) -> web.Response:
    form = await request.post()
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    submitted = _str(form.get(CSRF_FIELD)) or ""
    if not expected or not secrets.compare_digest(expected.encode(), submitted.encode()):
        raise ApiError(403, "csrf_failed", "the form's security token is missing or stale")
    container = request.app[CONTAINER]
    token = (_str(form.get("token")) or "").strip()
    signed = await sign_in(container.sessions, container.clock, token, remote=request.remote)
    if signed is None:
        request.app[METRICS].auth_failures.labels("invalid").inc()
        return _login_page(
            request, error="That token is not valid. Check it and try again.", status=401
        )
    _, opened = signed
    response = web.HTTPSeeOther("/admin", headers=PAGE_HEADERS)
    set_session_cookie(response, request, ADMIN, opened.cookie, opened.session.expires_at)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/admin/login")
    raise response


@routes.post("/admin/logout")
async def post_logout(request: web.Request) -> web.Response:
    who, _ = await posted(request)
    container = request.app[CONTAINER]
    cookie = cookie_value(request, ADMIN)
    if cookie is not None:
        await sign_out(container.sessions, container.clock, cookie, who.actor)
    response = web.HTTPSeeOther("/admin/login?done=signed_out")
    clear_session_cookie(response, ADMIN)
    raise response


# --- today ---------------------------------------------------------------------------------


@routes.get("/admin")
async def get_today(request: web.Request) -> web.Response:
    who = await signed_in(request)
    container = request.app[CONTAINER]
    figures = await today(container.sessions, container.clock, who.actor, area=who.area)
    return page(
        request,
        who,
        "admin/today.html",
        "today",
        title="Today",
        t=figures,
        threshold=FAILURE_THRESHOLD,
    )


# --- review --------------------------------------------------------------------------------


async def _review_page(
    request: web.Request, who: Signed, *, error: str | None = None, status: int = 200
) -> web.Response:
    container = request.app[CONTAINER]
    items = await list_review(container.sessions, container.clock, who.actor, area=who.area)
    choices = await settings_of(container.sessions, who.area)
    return page(
        request,
        who,
        "admin/review.html",
        "review",
        title="Review",
        items=items,
        names=await setting_names(container.sessions),
        settings=[s for s in choices if not s.local_authority],
        authorities=[s for s in choices if s.local_authority],
        error=error,
        status=status,
    )


@routes.get("/admin/review")
async def get_review_page(request: web.Request) -> web.Response:
    return await _review_page(request, await signed_in(request))


@routes.post("/admin/review/{item_id}/resolve")
async def post_review_resolve(request: web.Request) -> web.Response:
    who, form = await posted(request)
    choice = form.get("choice", "")
    setting_id: str | None = None
    la_code: str | None = None
    if choice.startswith("setting:"):
        setting_id = choice.removeprefix("setting:")
    elif choice == "other":
        setting_id = form.get("other_setting") or None
    elif choice.startswith("la:"):
        la_code = choice.removeprefix("la:")
    if setting_id is None and la_code is None:
        return await _review_page(
            request, who, error="Choose where the child goes, then press Resolve.", status=400
        )
    container = request.app[CONTAINER]
    try:
        done = await resolve(
            container.sessions,
            container.clock,
            who.actor,
            request.match_info["item_id"][:64],
            setting_id=setting_id,
            local_authority_contact=la_code is not None,
            la_code=la_code,
            area=who.area,
        )
    except ResolveRefused as exc:
        return await _review_page(request, who, error=str(exc), status=exc.status)
    request.app[METRICS].review_resolved.labels(done.resolution).inc()
    raise web.HTTPSeeOther("/admin/review?done=resolved")


# --- alerts --------------------------------------------------------------------------------


@routes.get("/admin/alerts")
async def get_alerts_page(request: web.Request) -> web.Response:
    who = await signed_in(request)
    container = request.app[CONTAINER]
    closed = request.query.get("show") == "resolved"
    alerts = await list_alerts(
        container.sessions, container.clock, who.actor, area=who.area, open_only=not closed
    )
    return page(
        request, who, "admin/alerts.html", "alerts", title="Alerts", page_=alerts, closed=closed
    )


@routes.post("/admin/alerts/{alert_id}/{action}")
async def post_alert(request: web.Request) -> web.Response:
    who, _ = await posted(request)
    action = request.match_info["action"]
    alert_id = request.match_info["alert_id"]
    if not alert_id.isascii() or not alert_id.isdigit() or len(alert_id) > 12:
        raise ApiError(404, "not_found", "no such alert")
    container = request.app[CONTAINER]
    try:
        await act_on_alert(
            container.sessions, container.clock, who.actor, int(alert_id), action, area=who.area
        )
    except AlertRefused as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    raise web.HTTPSeeOther(
        "/admin/alerts?done=" + ("acknowledged" if action == "acknowledge" else "closed")
    )


# --- dead letters --------------------------------------------------------------------------


@routes.get("/admin/dead-letters")
async def get_dead_letters_page(request: web.Request) -> web.Response:
    who = await signed_in(request)
    container = request.app[CONTAINER]
    letters = await list_dead_letters(
        container.sessions, container.broker, container.clock, who.actor, area=who.area
    )
    return page(
        request, who, "admin/dead_letters.html", "dead", title="Dead letters", letters=letters
    )


@routes.post("/admin/dead-letters/{queue}/replay")
async def post_replay(request: web.Request) -> web.Response:
    who, form = await posted(request)
    container = request.app[CONTAINER]
    try:
        await replay(
            container.sessions,
            container.broker,
            container.clock,
            who.actor,
            request.match_info["queue"],
            form.get("message_id", "")[:200],
            area=who.area,
        )
    except DeadLetterRefused as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    raise web.HTTPSeeOther("/admin/dead-letters?done=replayed")


# --- incident timeline ---------------------------------------------------------------------


@routes.get("/admin/incidents")
async def get_incident_page(request: web.Request) -> web.Response:
    who = await signed_in(request)
    force = request.query.get("force", "").strip().upper()[:32]
    ref = request.query.get("ref", "").strip()[:64]
    timeline = None
    if force and ref:
        container = request.app[CONTAINER]
        timeline = await incident_timeline(
            container.sessions,
            container.clock,
            who.actor,
            force_id=force,
            incident_ref=ref,
            area=who.area,
        )
    return page(
        request,
        who,
        "admin/incident.html",
        "incidents",
        title="Incident timeline",
        force=force,
        ref=ref,
        searched=bool(force and ref),
        timeline=timeline,
    )


# --- notices -------------------------------------------------------------------------------


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def _notices(
    request: web.Request, who: Signed, limit: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    query = request.query
    filters = {
        "status": query.get("status", "")
        if query.get("status", "") in {s.value for s in NoticeStatus}
        else "",
        "setting_id": query.get("setting_id", "")[:64],
        "since": query.get("since", "") if _day(query.get("since", "")) else "",
        "until": query.get("until", "") if _day(query.get("until", "")) else "",
        "overdue": query.get("overdue", "") if query.get("overdue") in ("true", "false") else "",
    }
    container = request.app[CONTAINER]
    notices = await admin_notices(
        container.sessions,
        container.clock,
        who.actor,
        status=NoticeStatus(filters["status"]) if filters["status"] else None,
        setting_id=filters["setting_id"] or None,
        since=_day(filters["since"]),
        until=_day(filters["until"]),
        overdue=None if not filters["overdue"] else filters["overdue"] == "true",
        limit=limit,
        area=who.area,
    )
    return notices, filters


@routes.get("/admin/notices")
async def get_notices_page(request: web.Request) -> web.Response:
    who = await signed_in(request)
    notices, filters = await _notices(request, who, 200)
    container = request.app[CONTAINER]
    return page(
        request,
        who,
        "admin/notices.html",
        "notices",
        title="Notices",
        notices=notices,
        filters=filters,
        statuses=[s.value for s in NoticeStatus],
        settings=[s for s in await settings_of(container.sessions, who.area)],
        csv_query=request.query_string,
    )


@routes.get("/admin/notices.csv")
async def get_notices_csv(request: web.Request) -> web.Response:
    who = await signed_in(request)
    notices, _ = await _notices(request, who, 1_000)
    stamp = request.app[CONTAINER].clock.now().astimezone(LONDON).strftime("%Y%m%d-%H%M")
    return web.Response(
        text=notices_csv(notices),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="notices-{stamp}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
