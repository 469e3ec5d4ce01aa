"""Routes for police systems: report an incident, see its status. A force sees only its own."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import select

from encompass.adapters.db.tables import Child, Force, Incident, IncidentVersion, Notice
from encompass.api.errors import ApiError
from encompass.api.keys import CONTAINER, METRICS
from encompass.domain.incident import IncidentReport
from encompass.services.credentials import force_for_token
from encompass.services.ingest import BrokerUnavailable, VersionConflict, report_incident

routes = web.RouteTableDef()


async def authenticated_force(request: web.Request) -> Force:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorised", "send the force's token as 'Authorization: Bearer …'")
    async with request.app[CONTAINER].sessions() as session:
        force = await force_for_token(session, token.strip())
    if force is None:
        raise ApiError(401, "unauthorised", "the token is not valid")
    return force


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Where and why, never echoing the submitted values back."""
    return [{"field": ".".join(str(p) for p in e["loc"]) or "body",
             "problem": str(e["msg"]).removeprefix("Value error, ")} for e in exc.errors()]


@routes.post("/v1/incidents")
async def post_incident(request: web.Request) -> web.Response:
    force = await authenticated_force(request)
    container, metrics = request.app[CONTAINER], request.app[METRICS]
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        metrics.incidents_refused.labels("invalid_json").inc()
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    try:
        report = IncidentReport.model_validate(data, context={"now": container.clock.now()})
    except ValidationError as exc:
        metrics.incidents_refused.labels("invalid").inc()
        raise ApiError(422, "invalid_incident", "the incident report is not valid",
                       validation_details(exc)) from None
    try:
        accepted = await report_incident(container.sessions, container.broker, container.clock,
                                         force.force_id, report)
    except VersionConflict as exc:
        metrics.incidents_refused.labels("conflict").inc()
        raise ApiError(409, "version_conflict", str(exc)) from None
    except BrokerUnavailable as exc:
        raise ApiError(503, "broker_unavailable", str(exc)) from None
    metrics.incidents_accepted.labels(force.force_id).inc()
    return web.json_response({"incident_id": accepted.incident_id, "version": report.version,
                              "duplicate": accepted.duplicate}, status=202)


@routes.get("/v1/incidents/{incident_id}")
async def get_incident(request: web.Request) -> web.Response:
    force = await authenticated_force(request)
    async with request.app[CONTAINER].sessions() as session:
        incident = await session.get(Incident, request.match_info["incident_id"])
        # Another force's incident is "not found": its existence is not ours to reveal.
        if incident is None or incident.force_id != force.force_id:
            raise ApiError(404, "not_found", "no such incident for this force")
        versions = (await session.execute(
            select(IncidentVersion).where(IncidentVersion.incident_id == incident.incident_id)
            .order_by(IncidentVersion.version))).scalars().all()
        latest = next((v for v in versions if v.version == incident.latest_version), None)
        children = [] if latest is None else (await session.execute(
            select(Child).where(Child.version_id == latest.version_id)
            .order_by(Child.position))).scalars().all()
        notices = (await session.execute(
            select(Notice).where(Notice.incident_id == incident.incident_id))).scalars().all()
    by_child: dict[str, list[Notice]] = {}
    for notice in notices:
        by_child.setdefault(notice.child_id, []).append(notice)
    return web.json_response({
        "incident_id": incident.incident_id,
        "incident_ref": incident.incident_ref,
        "status": incident.status,
        "latest_version": incident.latest_version,
        "versions": [{"version": v.version, "received_at": v.received_at.isoformat(),
                      "processed": v.processed_at is not None} for v in versions],
        "children": [{
            "position": child.position,
            "decision": child.decision,
            "resolved": child.resolved_at is not None,
            "notices": [{"notice_id": n.notice_id, "setting_id": n.setting_id,
                         "status": n.status, "recipient": n.recipient,
                         "deliver_at": n.deliver_at.isoformat() if n.deliver_at else None}
                        for n in by_child.get(child.child_id, [])],
        } for child in children],
    })
