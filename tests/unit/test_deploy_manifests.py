"""The compose file and the Kubernetes manifests in ``deploy/`` are well formed and agree
with the code: every command is one the CLI accepts, every ``ENCOMPASS_*`` variable is a
setting, the API is probed on ``/healthz`` and ``/readyz``, every reference (a selector, a
port name, a ConfigMap, a Secret) points at something that exists, and RabbitMQ runs as a
three-node cluster. (No Kubernetes schema validator is installable here from PyPI or
Debian, so this is a structural check with PyYAML.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from encompass.cli import build_parser
from encompass.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "RabbitmqCluster": "rabbitmq.com/v1beta1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}
# Made outside the manifests: by hand (secrets.yaml says how) or by the RabbitMQ operator.
EXTERNAL_SECRETS = {"encompass-keys", "encompass-database", "encompass-rabbitmq-default-user"}
SETTINGS = {f"ENCOMPASS_{name.upper()}" for name in Settings.model_fields}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == kind]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def deployment(name: str) -> dict[str, Any]:
    return next(d for d in of_kind("Deployment") if d["metadata"]["name"] == name)


def command_is_ours(command: list[str]) -> None:
    assert command[0] == "encompass"
    build_parser().parse_args(command[1:])  # exits (SystemExit) on a command we lack


def test_every_manifest_names_its_kind_version_and_itself() -> None:
    for doc in documents():
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], doc["kind"]
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"]


def test_the_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.yaml"}
    assert set(kustomization["resources"]) == on_disk
    template = yaml.safe_load((K8S / "secrets.yaml").read_text())
    assert all(value == "" for value in template["stringData"].values()), "no key committed"


def test_deployments_run_our_commands_with_our_settings() -> None:
    config_maps = {c["metadata"]["name"]: c for c in of_kind("ConfigMap")}
    for doc in of_kind("Deployment") + of_kind("Job"):
        spec = doc["spec"]
        if doc["kind"] == "Deployment":
            assert (
                spec["selector"]["matchLabels"].items()
                <= spec["template"]["metadata"]["labels"].items()
            )
        for container in containers(doc):
            command_is_ours(container["command"])
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for var in container.get("env", []):
                if var["name"].startswith("ENCOMPASS_"):
                    assert var["name"] in SETTINGS, var["name"]
                secret = var.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert secret["name"] in EXTERNAL_SECRETS
    for config_map in config_maps.values():
        assert set(config_map["data"]) <= SETTINGS


def test_the_api_is_probed_for_liveness_and_readiness() -> None:
    api = deployment("encompass-api")
    (container,) = containers(api)
    ports = {p["name"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "http" in ports
    service = next(s for s in of_kind("Service") if s["metadata"]["name"] == "encompass-api")
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


@pytest.mark.parametrize("name", ["encompass-matcher", "encompass-dispatcher", "encompass-intake"])
def test_workers_scale_out_and_have_time_to_stop(name: str) -> None:
    worker = deployment(name)
    assert worker["spec"]["replicas"] >= 2
    # Longer than a worker's own grace to finish or hand back what it holds (10 s).
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 10
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_rabbitmq_is_a_three_node_cluster_and_postgres_is_external() -> None:
    (cluster,) = of_kind("RabbitmqCluster")
    assert cluster["spec"]["replicas"] == 3
    assert (
        "quorum_queue.initial_cluster_size = 3" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    )
    postgres = next(s for s in of_kind("Service") if s["metadata"]["name"] == "postgres")
    assert postgres["spec"]["type"] == "ExternalName"


def test_the_compose_file_runs_a_cluster_and_every_role() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {
        "rabbitmq1",
        "rabbitmq2",
        "rabbitmq3",
        "postgres",
        "migrate",
        "api",
        "intake",
        "matcher",
        "dispatcher",
    } <= set(services)
    cluster_conf = (DEPLOY / "rabbitmq" / "cluster.conf").read_text()
    for node in ("rabbitmq1", "rabbitmq2", "rabbitmq3"):
        assert services[node]["hostname"] == node
        assert f"rabbit@{node}" in cluster_conf
    for name in ("migrate", "api", "intake", "matcher", "dispatcher"):
        command_is_ours(services[name]["command"])
        assert set(services[name]["environment"]) <= SETTINGS
    for name in ("matcher", "dispatcher"):
        assert services[name]["deploy"]["replicas"] >= 2
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
