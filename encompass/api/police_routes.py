"""Routes for police systems: report, withdraw and follow an incident. A force sees only its
own: another force's incident is ``404``, its existence not ours to reveal."""

from __future__ import annotations

from aiohttp import web

from encompass.api.app_keys import CONTAINER, INGEST, METRICS
from encompass.api.auth import authenticated_force
from encompass.api.errors import ApiError, read_body
from encompass.domain.incident import IncidentReport
from encompass.services.intake.follow import incident_for_force
from encompass.services.intake.ingest import BrokerUnavailable, VersionConflict
from encompass.services.intake.withdraw import IncidentNotFound, withdraw_incident

__all__ = ["authenticated_force", "routes"]

routes = web.RouteTableDef()


@routes.post("/v1/incidents")
async def post_incident(request: web.Request) -> web.Response:
    force = await authenticated_force(request)
    container, metrics = request.app[CONTAINER], request.app[METRICS]
    try:
        report = await read_body(
            request,
            IncidentReport,
            code="invalid_incident",
            what="the incident report",
            context={"now": container.clock.now()},
        )
    except ApiError as exc:
        reason = {400: "invalid_json", 415: "unsupported_media_type"}.get(exc.status, "invalid")
        metrics.incidents_refused.labels(reason).inc()
        raise
    try:
        accepted = await request.app[INGEST].report(force.force_id, report, channel="http")
    except VersionConflict as exc:
        metrics.incidents_refused.labels("conflict").inc()
        raise ApiError(409, "version_conflict", str(exc)) from None
    except BrokerUnavailable as exc:
        raise ApiError(503, "broker_unavailable", str(exc), headers={"Retry-After": "5"}) from None
    metrics.incidents_accepted.labels(force.force_id).inc()
    return web.json_response(
        {
            "incident_id": accepted.incident_id,
            "version": report.version,
            "duplicate": accepted.duplicate,
        },
        status=202,
    )


def _incident_id(request: web.Request) -> str:
    incident_id = request.match_info["incident_id"]
    if len(incident_id) > 64:  # our ids are UUIDs
        raise ApiError(404, "not_found", "no such incident for this force")
    return incident_id


@routes.post("/v1/incidents/{incident_id}/withdraw")
async def withdraw(request: web.Request) -> web.Response:
    force = await authenticated_force(request)
    container, incident_id = request.app[CONTAINER], _incident_id(request)
    try:
        result = await withdraw_incident(
            container.sessions, container.clock, container.signing_key, force.force_id, incident_id
        )
    except IncidentNotFound:
        raise ApiError(404, "not_found", "no such incident for this force") from None
    return web.json_response(result)


@routes.get("/v1/incidents/{incident_id}")
async def get_incident(request: web.Request) -> web.Response:
    force = await authenticated_force(request)
    container = request.app[CONTAINER]
    found = await incident_for_force(
        container.sessions, container.clock, force.force_id, _incident_id(request)
    )
    # Another force's incident is "not found": its existence is not ours to reveal.
    if found is None:
        raise ApiError(404, "not_found", "no such incident for this force")
    return web.json_response(found)
