"""The AsyncAPI 3 document for police systems publishing over AMQP, built from the same
pydantic models as the OpenAPI document: the report is :class:`IncidentReport`, the AMQP
properties are :class:`~encompass.services.intake.from_amqp.PublishProperties`."""

from __future__ import annotations

from typing import Any

from encompass.domain.incident import IncidentReport
from encompass.services.intake.from_amqp import FORCE_USER_PREFIX, PublishProperties

REF = "#/components/schemas/{model}"
EXCHANGE = "encompass.incidents"
AMQP_BINDING = "0.3.0"


def build_asyncapi() -> dict[str, Any]:
    """The document kept in ``schemas/asyncapi.json``."""
    report = IncidentReport.model_json_schema(ref_template=REF)
    schemas: dict[str, Any] = dict(report.pop("$defs", {}))
    schemas["IncidentReport"] = report
    schemas["PublishProperties"] = PublishProperties.model_json_schema(ref_template=REF)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Encompass: police systems over AMQP",
            "version": "1",
            "description": (
                "A force may publish an incident report, the same JSON body as "
                "POST /v1/incidents, to the exchange encompass.incidents as its own "
                f"RabbitMQ user ({FORCE_USER_PREFIX}<CODE>), with the message_id and "
                "user_id properties set. The force is taken from the broker-validated "
                "user_id, never from the body or a header. Validation and idempotency "
                "(force + incident_ref + version) are those of HTTP. A refused message is "
                "dead-lettered as a record of its message_id, user and reason (never the "
                "report) for the operator, who tells the force."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq.example:5671",
                "protocol": "amqps",
                "protocolVersion": "0-9-1",
                "description": "The deployment's RabbitMQ (TLS). Each force has its own user, "
                "allowed to write to the encompass.incidents exchange only "
                "(configure and read: none).",
                "security": [{"$ref": "#/components/securitySchemes/forceUser"}],
            }
        },
        "channels": {
            "incidents": {
                "address": EXCHANGE,
                "title": "Incident reports from police forces",
                "description": "A durable fanout exchange (the routing key is ignored) that "
                "feeds the service's intake queue. A deployment with a queue "
                "prefix names it <prefix>encompass.incidents.",
                "messages": {"incidentReport": {"$ref": "#/components/messages/IncidentReport"}},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": EXCHANGE,
                            "type": "fanout",
                            "durable": True,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": AMQP_BINDING,
                    }
                },
            }
        },
        "operations": {
            "reportIncident": {
                "action": "send",
                "channel": {"$ref": "#/channels/incidents"},
                "title": "Report an incident or a new version of one",
                "summary": "Publish one incident report as the force's own RabbitMQ user.",
                "description": "Use publisher confirms: a confirmed message is stored. The same "
                "force + incident_ref + version again is harmless; different "
                "content under a version already received is refused.",
                "messages": [{"$ref": "#/channels/incidents/messages/incidentReport"}],
                "bindings": {
                    "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING}
                },
            }
        },
        "components": {
            "schemas": schemas,
            "messages": {
                "IncidentReport": {
                    "name": "IncidentReport",
                    "title": "An incident report",
                    "summary": "The body of POST /v1/incidents, as a persistent AMQP message.",
                    "description": "Required AMQP properties: message_id and user_id (see "
                    "x-amqp-properties). Headers are ignored: nothing in them "
                    "is trusted.",
                    "contentType": "application/json",
                    "payload": {"$ref": REF.format(model="IncidentReport")},
                    "x-amqp-properties": {"$ref": REF.format(model="PublishProperties")},
                    "bindings": {
                        "amqp": {"messageType": "incident_report", "bindingVersion": AMQP_BINDING}
                    },
                }
            },
            "securitySchemes": {
                "forceUser": {
                    "type": "userPassword",
                    "description": f"The force's RabbitMQ user {FORCE_USER_PREFIX}<CODE> and "
                    "its password, issued by the operator (encompass forces add "
                    "CODE --name NAME --amqp prints the commands).",
                }
            },
        },
    }
