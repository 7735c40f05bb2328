"""Helm chart: rendered by Helm's own engine (helm-python-sdk), checked against Kubernetes schemas.

No helm binary, cluster or network: ``helm_python`` binds Helm's Go SDK, ``kubernetes_validate``
ships the Kubernetes JSON schemas. CRDs (ServiceMonitor, ScaledObject, TriggerAuthentication,
PrometheusRule) have no schema there, so their fields are asserted directly; alert expressions are
parsed by ``promql_parser`` (Prometheus' grammar, compiled from the Rust promql-parser crate).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from streams.settings import Settings, load_settings
from tests import monitoring

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "leadstream"
RELEASE = "ls"
NAMESPACE = "leadstream-test"
# The newest Kubernetes minor kubernetes-validate 1.37.0 ships schemas for.
KUBE_VERSION = "1.37.0"
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication", "PrometheusRule"}
SECRET_ENV = "LEADSTREAM_TIKTOK_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
META_SECRET_ENV = "LEADSTREAM_META_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
SASL_PASSWORD_ENV = "LEADSTREAM_KAFKA_SASL_PASSWORD"  # noqa: S105 - a variable name
SSL_KEY_PASSWORD_ENV = "LEADSTREAM_KAFKA_SSL_KEY_PASSWORD"  # noqa: S105 - a variable name
REGISTRY_AUTH_ENV = "LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH"
SASL_USERNAME_ENV = "LEADSTREAM_KAFKA_SASL_USERNAME"
# Settings that only ever come from Secrets (env valueFrom.secretKeyRef), never from the ConfigMap.
SECRET_ENVS = {
    SECRET_ENV,
    META_SECRET_ENV,
    SASL_PASSWORD_ENV,
    SSL_KEY_PASSWORD_ENV,
    REGISTRY_AUTH_ENV,
}
# The connection settings of issue 12, added to streams/settings.py by another change. Listed here
# so the chart is checked against them before that change is merged; once it is, each of them is
# a Settings field and this set adds nothing to settings_env_names().
CONNECTION_SETTINGS = {
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "kafka_ssl_certificate_location",
    "kafka_ssl_key_location",
    "kafka_ssl_key_password",
    "kafka_ssl_check_hostname",
    "kafka_confirm_end_offsets",
    "kafka_connect_timeout",
    "schema_registry_basic_auth",
    "schema_registry_ca_location",
    "allow_low_replication",
}
DASHBOARD_KEY = "leadstream.json"
KAFKA_TLS_DIR = "/etc/leadstream/kafka-tls"
REGISTRY_TLS_DIR = "/etc/leadstream/schema-registry-tls"
INPUT_TOPIC_ENVS = (
    "LEADSTREAM_TOPIC_FORM_SUBMITTED",
    "LEADSTREAM_TOPIC_BOOKING_CREATED",
    "LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED",
)
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)

# Every optional feature on at once.
ALL_ON: dict[str, Any] = {
    "replicaCount": 2,
    "persistence": {"enabled": True, "storageClass": "fast", "size": "20Gi"},
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "prom"},
            "interval": "15s",
            "scrapeTimeout": "10s",
        },
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Streams"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
    },
    "autoscaling": {
        "keda": {
            "enabled": True,
            "maxReplicaCount": 12,
            "lagThreshold": 500,
        }
    },
    "tiktok": {
        "existingSecret": "tiktok-credentials",
        "existingSecretKey": "token",
        "pixelCode": "PIXEL1",
        "crmEventSetId": "CRM1",
        "testEventCode": "TEST1",
        "fallbackPageUrl": "https://shop.example.com/",
    },
    "meta": {
        "pixelId": "123456789012345",
        "existingSecret": "meta-credentials",
        "testEventCode": "TEST9",
        "stageMap": {"mql": "QualifiedLead"},
    },
    "kafka": {
        "securityProtocol": "SASL_SSL",
        "auth": {
            "mechanism": "SCRAM-SHA-512",
            "username": "leadstream",
            "existingSecret": "kafka-credentials",
        },
        "tls": {
            "enabled": True,
            "existingSecret": "kafka-client-tls",
            "caExistingSecret": "kafka-cluster-ca",
            "keyPasswordKey": "key-password",
        },
    },
    "schemaRegistry": {
        "url": "https://registry:8081",
        "schemaDir": "/custom/schemas",
        "existingSecret": "registry-credentials",
        "tls": {"existingSecret": "registry-ca"},
    },
    "networkPolicy": {
        "ingressNamespaces": ["monitoring", "ops"],
        "ingressNamespaceSelector": {"matchLabels": {"team": "sre"}},
        "ingressPodSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    },
    "rules": {
        "stageMap": {"mql": "QualifiedLead", "won": "Purchase"},
        "stageMapWeb": {"mql": "Contact"},
        "stageMapCrm": {"sql": "SalesQualified"},
    },
    "extraEnv": [{"name": "EXTRA_ONE", "value": "1"}],
    "commonLabels": {"team": "growth"},
    "commonAnnotations": {"owner": "data-eng"},
    "image": {"pullSecrets": ["regcred"]},
    "nodeSelector": {"pool": "streams"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "streams", "effect": "NoSchedule"}
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "leadstream"}},
                    },
                }
            ]
        }
    },
    "priorityClassName": "high",
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "persistence": {"persistence": {"enabled": True}},
    "rocksdb-emptydir": {"tables": {"store": "rocksdb://"}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "grafana-dashboard": {"metrics": {"grafanaDashboard": {"enabled": True}}},
    "prometheus-rule": {"metrics": {"prometheusRule": {"enabled": True}}},
    "keda": {"autoscaling": {"keda": {"enabled": True}}},
    "keda-statefulset": {
        "autoscaling": {"keda": {"enabled": True}},
        "persistence": {"enabled": True},
    },
    "existing-secret": {"tiktok": {"existingSecret": "tiktok-credentials"}},
    "created-secret": {"tiktok": {"accessToken": "s3cr3t-token"}},
    "meta-created-secret": {
        "tiktok": {"accessToken": "s3cr3t-token"},
        "meta": {"pixelId": "123456789012345", "accessToken": "meta-s3cr3t"},
    },
    "extra-env": {"extraEnv": [{"name": "LEADSTREAM_LOG_LEVEL", "value": "DEBUG"}]},
    "no-pdb-no-sa": {"pdb": {"create": False}, "serviceAccount": {"create": False}},
    "image-digest": {"image": {"digest": "sha256:" + "a" * 64}},
    # Kafka security, as in the chart README's worked examples.
    "confluent-cloud": {
        "kafka": {
            "securityProtocol": "SASL_SSL",
            "auth": {"mechanism": "PLAIN", "existingSecret": "confluent-kafka"},
        },
        "schemaRegistry": {"url": "https://psrc.example.cloud", "existingSecret": "confluent-sr"},
        "autoscaling": {"keda": {"enabled": True}},
    },
    "msk-scram": {
        "kafka": {
            "securityProtocol": "SASL_SSL",
            "auth": {"mechanism": "SCRAM-SHA-512", "existingSecret": "msk-scram"},
        },
        "autoscaling": {"keda": {"enabled": True}},
    },
    "aiven-mtls": {
        "kafka": {
            "securityProtocol": "SSL",
            "tls": {
                "enabled": True,
                "existingSecret": "aiven-kafka",
                "caKey": "ca.pem",
                "certKey": "service.cert",
                "keyKey": "service.key",
            },
        },
        "autoscaling": {"keda": {"enabled": True}},
    },
    "strimzi-mtls": {
        "kafka": {
            "securityProtocol": "SSL",
            "tls": {
                "enabled": True,
                "existingSecret": "leadstream",
                "caExistingSecret": "my-cluster-cluster-ca-cert",
                "certKey": "user.crt",
                "keyKey": "user.key",
            },
        },
        "persistence": {"enabled": True},
        "autoscaling": {"keda": {"enabled": True}},
    },
    "ssl-system-trust": {"kafka": {"securityProtocol": "SSL"}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "all-on": ALL_ON,
}


# --- helpers --------------------------------------------------------------------------------


class Rendered:
    """The parsed output of one render: manifests by kind, plus NOTES.txt."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.notes = next((text for name, text in files.items() if name.endswith("NOTES.txt")), "")
        self.docs: list[dict[str, Any]] = []
        for name, text in files.items():
            if name.endswith(".txt"):
                continue
            self.docs.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self.docs}

    def workload(self) -> dict[str, Any]:
        found = self.all("Deployment") + self.all("StatefulSet")
        assert len(found) == 1, f"expected one workload, got {len(found)}"
        return found[0]

    def container(self) -> dict[str, Any]:
        containers = self.workload()["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def settings_configmap(self) -> dict[str, Any]:
        """The settings ConfigMap (not the Grafana dashboard's)."""
        found = [doc for doc in self.all("ConfigMap") if DASHBOARD_KEY not in doc["data"]]
        assert len(found) == 1, f"expected one settings ConfigMap, got {len(found)}"
        return found[0]

    def config(self) -> dict[str, str]:
        data: dict[str, str] = self.settings_configmap()["data"]
        return data

    def text(self, suffix: str) -> str:
        return next(text for name, text in self.files.items() if name.endswith(suffix))


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> Rendered:
    return Rendered(chart.render(copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE))


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Evaluate a Kubernetes label selector (matchLabels + matchExpressions) against labels."""
    match_labels = selector.get(
        "matchLabels", selector if "matchExpressions" not in selector else {}
    )
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def settings_env_names() -> set[str]:
    """Every LEADSTREAM_* variable: the Settings fields plus the connection settings of issue 12."""
    return {
        f"LEADSTREAM_{name.upper()}" for name in set(Settings.model_fields) | CONNECTION_SETTINGS
    }


def secret_ref(container: dict[str, Any], name: str) -> dict[str, str]:
    """The secretKeyRef an env variable comes from; fails when it has a plain value instead."""
    entry = env_by_name(container)[name]
    assert "value" not in entry, f"{name} has a plain value"
    ref: dict[str, str] = entry["valueFrom"]["secretKeyRef"]
    return ref


# --- lint and schema validation ----------------------------------------------------------------


def test_chart_metadata_matches_the_package(chart: helm.Chart) -> None:
    meta = chart.metadata
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "leadstream"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0" == project["version"]


@pytest.mark.parametrize(
    "scenario", ["defaults", "all-on", "persistence", "created-secret", "strimzi-mtls"]
)
def test_helm_lint_is_clean(scenario: str) -> None:
    report = helm.lint(
        CHART_DIR,
        copy.deepcopy(SCENARIOS[scenario]),
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_schema_violations() -> None:
    report = helm.lint(CHART_DIR, {"rules": {"consentPolicy": "sometimes"}})
    assert any("consentPolicy" in error for error in report["errors"])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_validates_against_kubernetes_schemas(
    chart: helm.Chart, scenario: str
) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    assert rendered.docs
    for doc in rendered.docs:
        if doc["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate; fields asserted in the tests below
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_schema_validation_can_fail(chart: helm.Chart) -> None:
    """The validator is not a rubber stamp: a broken Deployment is rejected."""
    deployment = copy.deepcopy(render(chart).one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    deployment = copy.deepcopy(render(chart).one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"rules": {"consentPolicy": "sometimes"}}, "/rules/consentPolicy"),
        ({"image": {"repository": ""}}, "/image/repository"),
        ({"kafka": {"topicPartitions": "four"}}, "/kafka/topicPartitions"),
        ({"kafka": {"topicPartitions": 0}}, "/kafka/topicPartitions"),
        ({"logLevel": "LOUD"}, "/logLevel"),
        ({"tables": {"store": "redis://"}}, "/tables/store"),
        ({"rules": {"pendingWait": "one day"}}, "/rules/pendingWait"),
        ({"delivery": {"batchMax": 5000}}, "/delivery/batchMax"),
        ({"persistence": {"enabled": "yes"}}, "/persistence/enabled"),
        ({"tiktok": {"accesToken": "typo"}}, "accesToken"),
        ({"replicaCont": 2}, "replicaCont"),
        ({"kafka": {"securityProtocol": "FOO"}}, "/kafka/securityProtocol"),
        ({"kafka": {"securityProtocol": "sasl_ssl"}}, "/kafka/securityProtocol"),
        ({"kafka": {"auth": {"mechanism": "GSSAPI"}}}, "/kafka/auth/mechanism"),
        ({"kafka": {"auth": {"passwrd": "x"}}}, "passwrd"),
        ({"kafka": {"auth": {"existingSecret": "Not_A_Name"}}}, "/kafka/auth/existingSecret"),
        ({"kafka": {"tls": {"enabled": "yes"}}}, "/kafka/tls/enabled"),
        ({"kafka": {"tls": {"checkHostname": "no"}}}, "/kafka/tls/checkHostname"),
        ({"kafka": {"tls": {"ca": "pem"}}}, "ca"),
        ({"kafka": {"connectTimeout": 0}}, "/kafka/connectTimeout"),
        ({"kafka": {"allowLowReplication": "yes"}}, "/kafka/allowLowReplication"),
        ({"schemaRegistry": {"tls": {"caKey": "a/b"}}}, "/schemaRegistry/tls/caKey"),
        ({"networkPolicy": {"enabled": "true"}}, "/networkPolicy/enabled"),
        ({"networkPolicy": {"ingressNamespaces": ["Bad_NS"]}}, "/networkPolicy/ingressNamespaces"),
        ({"networkPolicy": {"allowExternal": True}}, "allowExternal"),
    ],
)
def test_values_schema_rejects_bad_values(
    chart: helm.Chart, values: dict[str, Any], needle: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(needle)):
        render(chart, values)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_values_schema_accepts_every_scenario(chart: helm.Chart, scenario: str) -> None:
    chart.validate_schema(chart.merge_values(copy.deepcopy(SCENARIOS[scenario])))


def test_values_schema_is_draft_07_and_requires_the_image_repository(chart: helm.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "repository" in schema["properties"]["image"]["required"]
    assert schema["properties"]["rules"]["properties"]["consentPolicy"]["enum"] == [
        "granted-only",
        "unless-denied",
    ]


# --- what is rendered -------------------------------------------------------------------------


def test_defaults_render_a_deployment_and_nothing_optional(chart: helm.Chart) -> None:
    rendered = render(chart)
    assert rendered.kinds() == {
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    assert rendered.one("Deployment")["spec"]["replicas"] == 1


def test_all_on_renders_every_optional_object(chart: helm.Chart) -> None:
    rendered = render(chart, ALL_ON)
    assert rendered.kinds() == {
        "ConfigMap",
        "StatefulSet",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "ScaledObject",
        "TriggerAuthentication",
        "NetworkPolicy",
    }
    assert len(rendered.all("ConfigMap")) == 2  # the settings and the Grafana dashboard
    assert len(rendered.all("Service")) == 2  # the Service and the StatefulSet's headless one


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_standard_labels_on_every_object(chart: helm.Chart, scenario: str) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        for label in STANDARD_LABELS:
            assert label in labels, f"{doc['kind']} lacks {label}"
        assert labels["app.kubernetes.io/name"] == "leadstream"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "leadstream-0.1.0"


def test_notes_render_and_warn_without_credentials(chart: helm.Chart) -> None:
    notes = render(chart).notes
    assert "leadstream worker" in notes
    assert "no TikTok access token" in notes
    assert "no TikTok access token" not in render(chart, ALL_ON).notes


def test_notes_warn_about_low_replication_and_name_the_allowed_namespaces(
    chart: helm.Chart,
) -> None:
    notes = render(chart).notes
    assert "topicReplication" not in notes
    assert "namespaces monitoring." in notes
    low = render(chart, {"kafka": {"topicReplication": 1}}).notes
    assert "WARNING: kafka.topicReplication=1" in low
    allowed = {"kafka": {"topicReplication": 1, "allowLowReplication": True}}
    assert "WARNING: kafka.topicReplication" not in render(chart, allowed).notes
    assert "NetworkPolicy" not in render(chart, SCENARIOS["no-network-policy"]).notes


# --- image --------------------------------------------------------------------------------------


def test_image_tag_defaults_to_app_version(chart: helm.Chart) -> None:
    rendered = render(chart)
    assert rendered.container()["image"] == f"leadstream:{chart.metadata['appVersion']}"
    assert rendered.one("Deployment")["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"
    tagged = render(chart, {"image": {"repository": "registry.example.com/ls", "tag": "1.2.3"}})
    assert tagged.container()["image"] == "registry.example.com/ls:1.2.3"
    digest = "sha256:" + "b" * 64
    pinned = render(chart, {"image": {"digest": digest}})
    assert pinned.container()["image"] == f"leadstream@{digest}"


def test_chart_runs_the_image_entry_point(chart: helm.Chart) -> None:
    """No command/args: the image's ENTRYPOINT + CMD (`leadstream worker`) run unchanged."""
    for scenario in SCENARIOS.values():
        container = render(chart, scenario).container()
        assert "command" not in container
        assert "args" not in container


# --- configuration ------------------------------------------------------------------------------


def test_configmap_holds_every_non_secret_setting(chart: helm.Chart) -> None:
    data = render(chart, ALL_ON).config()
    assert set(data) == settings_env_names() - SECRET_ENVS
    assert SECRET_ENV not in render(chart, SCENARIOS["created-secret"]).config()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_secrets_never_reach_the_configmap(chart: helm.Chart, scenario: str) -> None:
    """Secret settings come only from secretKeyRef; the ConfigMap holds no such key."""
    rendered = render(chart, SCENARIOS[scenario])
    assert not SECRET_ENVS & set(rendered.config())
    env = env_by_name(rendered.container())
    for name in SECRET_ENVS & set(env):
        secret_ref(rendered.container(), name)
    for name in ("extraEnvFrom", "extraEnv"):
        assert name not in rendered.config()


def test_configmap_defaults_are_the_workers_defaults(
    chart: helm.Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default ConfigMap, read by the real settings object, changes no setting."""
    for name in list(os.environ):
        if name.startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)
    baseline = load_settings()
    data = render(chart).config()
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    from_chart = load_settings()
    # Issue 12 makes 3 the worker's default replication too; until that settings change is
    # merged the worker's default is still 1, and this pins the chart's 3 either way.
    assert data["LEADSTREAM_TOPIC_REPLICATION"] == "3"
    assert from_chart.model_dump() == baseline.model_dump() | {"topic_replication": 3}
    # Optional settings that are empty by default stay unset rather than "".
    for optional in (
        "LEADSTREAM_STAGE_MAP",
        "LEADSTREAM_TIKTOK_PIXEL_CODE",
        "LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID",
        "LEADSTREAM_TIKTOK_TEST_EVENT_CODE",
        "LEADSTREAM_META_PIXEL_ID",
        "LEADSTREAM_META_TEST_EVENT_CODE",
        "LEADSTREAM_META_STAGE_MAP",
        "LEADSTREAM_SCHEMA_DIR",
        "LEADSTREAM_KAFKA_SASL_MECHANISM",
        SASL_USERNAME_ENV,
        "LEADSTREAM_KAFKA_SSL_CA_LOCATION",
        "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION",
        "LEADSTREAM_KAFKA_SSL_KEY_LOCATION",
        "LEADSTREAM_SCHEMA_REGISTRY_CA_LOCATION",
    ):
        assert optional not in data
    # The connection defaults the worker shares (issue 12).
    assert data["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert data["LEADSTREAM_KAFKA_SSL_CHECK_HOSTNAME"] == "true"
    assert data["LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS"] == "false"
    assert data["LEADSTREAM_KAFKA_CONNECT_TIMEOUT"] == "15"
    assert data["LEADSTREAM_ALLOW_LOW_REPLICATION"] == "false"


def test_configmap_maps_camel_case_values_to_env_names(chart: helm.Chart) -> None:
    values = {
        "kafka": {
            "bootstrap": "k1:9092,k2:9092",
            "appId": "ls-prod",
            "topicPartitions": 12,
            "topicReplication": 3,
            "sessionTimeout": 30,
            "heartbeatInterval": 3,
            "topics": {
                "formSubmitted": "a",
                "bookingCreated": "b",
                "leadStatusChanged": "c",
                "conversions": "d",
                "deliveries": "e",
                "deadLetter": "f",
            },
        },
        "tiktok": {"apiUrl": "http://sandbox:8090", "timeout": 2.5, "pixelCode": "PX"},
        "rules": {
            "stageMap": {"won": "Purchase"},
            "consentPolicy": "unless-denied",
            "pendingWait": 3600,
            "expiryInterval": 5,
        },
        "delivery": {"batchMax": 500, "retryBackoffInitial": 0.25, "retryHorizon": "PT1H"},
        "web": {"host": "127.0.0.1"},
        "containerPorts": {"http": 7000},
        "logLevel": "DEBUG",
    }
    data = render(chart, values).config()
    assert data["LEADSTREAM_KAFKA_BOOTSTRAP"] == "k1:9092,k2:9092"
    assert data["LEADSTREAM_APP_ID"] == "ls-prod"
    assert data["LEADSTREAM_TOPIC_PARTITIONS"] == "12"
    assert data["LEADSTREAM_TOPIC_REPLICATION"] == "3"
    assert data["LEADSTREAM_SESSION_TIMEOUT"] == "30"
    assert [data[e] for e in INPUT_TOPIC_ENVS] == ["a", "b", "c"]
    assert data["LEADSTREAM_TOPIC_DEAD_LETTER"] == "f"
    assert data["LEADSTREAM_TIKTOK_API_URL"] == "http://sandbox:8090"
    assert data["LEADSTREAM_TIKTOK_TIMEOUT"] == "2.5"
    assert data["LEADSTREAM_TIKTOK_PIXEL_CODE"] == "PX"
    assert data["LEADSTREAM_STAGE_MAP"] == '{"won":"Purchase"}'
    assert data["LEADSTREAM_CONSENT_POLICY"] == "unless-denied"
    assert data["LEADSTREAM_PENDING_WAIT"] == "3600"
    assert data["LEADSTREAM_DELIVERY_BATCH_MAX"] == "500"
    assert data["LEADSTREAM_RETRY_BACKOFF_INITIAL"] == "0.25"
    assert data["LEADSTREAM_RETRY_HORIZON"] == "PT1H"
    assert data["LEADSTREAM_WEB_HOST"] == "127.0.0.1"
    assert data["LEADSTREAM_WEB_PORT"] == "7000"
    assert data["LEADSTREAM_LOG_LEVEL"] == "DEBUG"


def test_env_comes_from_the_configmap(chart: helm.Chart) -> None:
    for scenario in ("defaults", "all-on"):
        rendered = render(chart, SCENARIOS[scenario])
        refs = [
            src["configMapRef"]["name"]
            for src in rendered.container()["envFrom"]
            if "configMapRef" in src
        ]
        assert refs == [rendered.settings_configmap()["metadata"]["name"]]


def test_pod_template_carries_the_configmap_checksum(chart: helm.Chart) -> None:
    rendered = render(chart)
    annotations = rendered.workload()["spec"]["template"]["metadata"]["annotations"]
    expected = hashlib.sha256(rendered.text("configmap.yaml").encode()).hexdigest()
    assert annotations["checksum/config"] == expected
    changed = render(chart, {"kafka": {"bootstrap": "other:9092"}})
    assert (
        changed.workload()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        != expected
    )


def test_extra_env_is_added_after_the_token(chart: helm.Chart) -> None:
    rendered = render(chart, ALL_ON)
    names = [entry["name"] for entry in rendered.container()["env"]]
    assert names == [
        SECRET_ENV,
        META_SECRET_ENV,
        SASL_PASSWORD_ENV,
        SSL_KEY_PASSWORD_ENV,
        REGISTRY_AUTH_ENV,
        "EXTRA_ONE",
    ]
    assert env_by_name(rendered.container())["EXTRA_ONE"]["value"] == "1"
    only_extra = render(chart, SCENARIOS["extra-env"]).container()
    assert only_extra["env"] == [{"name": "LEADSTREAM_LOG_LEVEL", "value": "DEBUG"}]


# --- credentials ---------------------------------------------------------------------------------


def test_token_from_an_existing_secret(chart: helm.Chart) -> None:
    rendered = render(
        chart, {"tiktok": {"existingSecret": "tiktok-credentials", "existingSecretKey": "token"}}
    )
    ref = env_by_name(rendered.container())[SECRET_ENV]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "tiktok-credentials", "key": "token"}
    assert rendered.all("Secret") == []
    assert SECRET_ENV not in rendered.config()


def test_token_from_a_secret_the_chart_creates(chart: helm.Chart) -> None:
    token = "s3cr3t-token"  # noqa: S105 - a test value
    rendered = render(chart, {"tiktok": {"accessToken": token}})
    secret = rendered.one("Secret")
    ref = env_by_name(rendered.container())[SECRET_ENV]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "access-token"}
    assert base64.b64decode(secret["data"]["access-token"]).decode() == token
    # The token appears nowhere but in the Secret.
    for name, text in rendered.files.items():
        if not name.endswith("secret.yaml"):
            assert token not in text, name
    annotations = rendered.workload()["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations["checksum/secret"]
        == hashlib.sha256(rendered.text("secret.yaml").encode()).hexdigest()
    )


def test_existing_secret_and_token_together_fail(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="not both"):
        render(chart, {"tiktok": {"existingSecret": "x", "accessToken": "y"}})


def test_meta_token_from_an_existing_secret(chart: helm.Chart) -> None:
    values = {"meta": {"pixelId": "123456789012345", "existingSecret": "meta-credentials"}}
    rendered = render(chart, values)
    ref = env_by_name(rendered.container())[META_SECRET_ENV]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "meta-credentials", "key": "meta-access-token"}
    assert rendered.all("Secret") == []
    data = rendered.config()
    assert data["LEADSTREAM_META_PIXEL_ID"] == "123456789012345"
    assert data["LEADSTREAM_META_API_URL"] == "https://graph.facebook.com"
    assert data["LEADSTREAM_META_API_VERSION"] == "v25.0"


def test_meta_token_joins_the_secret_the_chart_creates(chart: helm.Chart) -> None:
    rendered = render(chart, SCENARIOS["meta-created-secret"])
    secret = rendered.one("Secret")
    assert base64.b64decode(secret["data"]["meta-access-token"]).decode() == "meta-s3cr3t"
    assert base64.b64decode(secret["data"]["access-token"]).decode() == "s3cr3t-token"
    env = env_by_name(rendered.container())
    assert env[META_SECRET_ENV]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "meta-access-token",
    }
    for name, text in rendered.files.items():
        if not name.endswith("secret.yaml"):
            assert "meta-s3cr3t" not in text, name


def test_meta_token_alone_creates_a_secret_without_the_tiktok_key(chart: helm.Chart) -> None:
    values = {
        "tiktok": {"existingSecret": "tiktok-credentials"},
        "meta": {"pixelId": "123456789012345", "accessToken": "meta-s3cr3t"},
    }
    secret = render(chart, values).one("Secret")
    assert set(secret["data"]) == {"meta-access-token"}


def test_meta_values_reach_the_configmap(chart: helm.Chart) -> None:
    data = render(chart, ALL_ON).config()
    assert data["LEADSTREAM_META_TEST_EVENT_CODE"] == "TEST9"
    assert data["LEADSTREAM_META_STAGE_MAP"] == '{"mql":"QualifiedLead"}'


@pytest.mark.parametrize(
    ("meta", "needle"),
    [
        ({"pixelId": "1", "existingSecret": "x", "accessToken": "y"}, "not both"),
        ({"pixelId": "123"}, "meta.pixelId is set without a Meta token"),
        ({"accessToken": "y"}, "without meta.pixelId"),
        ({"existingSecret": "x"}, "without meta.pixelId"),
    ],
)
def test_half_a_meta_configuration_fails(
    chart: helm.Chart, meta: dict[str, str], needle: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(needle)):
        render(chart, {"meta": meta})


def test_no_meta_values_render_no_meta_token(chart: helm.Chart) -> None:
    rendered = render(chart, SCENARIOS["created-secret"])
    assert META_SECRET_ENV not in env_by_name(rendered.container())
    assert "LEADSTREAM_META_PIXEL_ID" not in rendered.config()
    assert set(rendered.one("Secret")["data"]) == {"access-token"}


def test_no_credentials_render_no_token_env(chart: helm.Chart) -> None:
    rendered = render(chart)
    assert SECRET_ENV not in env_by_name(rendered.container())
    assert rendered.all("Secret") == []


# --- ports, probes, selectors -------------------------------------------------------------------


@pytest.mark.parametrize("port", [6066, 7000])
def test_probes_use_the_named_http_port(chart: helm.Chart, port: int) -> None:
    rendered = render(chart, {"containerPorts": {"http": port}})
    container = rendered.container()
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert rendered.config()["LEADSTREAM_WEB_PORT"] == str(port)
    probes = {name: container[name] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: probe["httpGet"]["port"] for name, probe in probes.items()} == dict.fromkeys(
        probes, "http"
    )
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert probes["startupProbe"]["httpGet"]["path"] == "/health/ready"
    service_port = rendered.one("Service")["spec"]["ports"][0]
    assert service_port["name"] == "http"
    assert service_port["targetPort"] == "http"


def test_startup_probe_allows_a_long_table_recovery(chart: helm.Chart) -> None:
    probe = render(chart).container()["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 600
    assert probe["failureThreshold"] >= 30


def test_probes_can_be_disabled(chart: helm.Chart) -> None:
    container = render(chart, {"startupProbe": {"enabled": False}}).container()
    assert "startupProbe" not in container
    assert "livenessProbe" in container


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_selectors_match_the_pod_labels(chart: helm.Chart, scenario: str) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    workload = rendered.workload()
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    selector = workload["spec"]["selector"]
    assert selects(selector, pod_labels)
    assert selector["matchLabels"] == {
        "app.kubernetes.io/name": "leadstream",
        "app.kubernetes.io/instance": RELEASE,
    }
    for service in rendered.all("Service"):
        assert selects(service["spec"]["selector"], pod_labels)
    for pdb in rendered.all("PodDisruptionBudget"):
        assert pdb["spec"]["selector"] == selector


# --- security and resources ---------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["defaults", "all-on"])
def test_security_context_is_non_root_and_locked_down(chart: helm.Chart, scenario: str) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    pod = rendered.workload()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = rendered.container()["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in rendered.container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own emptyDir


def test_resources_have_sane_defaults(chart: helm.Chart) -> None:
    resources = render(chart).container()["resources"]
    assert resources["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert resources["limits"] == {"memory": "1Gi"}


def test_scheduling_values_reach_the_pod(chart: helm.Chart) -> None:
    pod = render(chart, ALL_ON).workload()["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == ALL_ON["nodeSelector"]
    assert pod["tolerations"] == ALL_ON["tolerations"]
    assert pod["affinity"] == ALL_ON["affinity"]
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_service_account(chart: helm.Chart) -> None:
    rendered = render(chart)
    account = rendered.one("ServiceAccount")
    assert (
        rendered.workload()["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )
    assert account["automountServiceAccountToken"] is False
    external = render(chart, {"serviceAccount": {"create": False, "name": "shared"}})
    assert external.all("ServiceAccount") == []
    assert external.workload()["spec"]["template"]["spec"]["serviceAccountName"] == "shared"


@pytest.mark.parametrize("replicas", [1, 3])
def test_pod_disruption_budget(chart: helm.Chart, replicas: int) -> None:
    pdb = render(chart, {"replicaCount": replicas}).one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert render(chart, {"pdb": {"create": False}}).all("PodDisruptionBudget") == []


def test_replicas_beyond_partitions_fail(chart: helm.Chart) -> None:
    assert render(chart, {"replicaCount": 4}).workload()["spec"]["replicas"] == 4
    with pytest.raises(helm.HelmRenderError, match=r"kafka\.topicPartitions"):
        render(chart, {"replicaCount": 5})


# --- persistence ---------------------------------------------------------------------------------


def test_persistence_renders_a_statefulset_with_rocksdb(chart: helm.Chart) -> None:
    rendered = render(
        chart,
        {
            "persistence": {
                "enabled": True,
                "size": "20Gi",
                "storageClass": "fast",
                "mountPath": "/var/lib/ls",
            }
        },
    )
    assert rendered.all("Deployment") == []
    sts = rendered.one("StatefulSet")
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claims[0]["spec"]["storageClassName"] == "fast"
    assert claims[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in rendered.container()["volumeMounts"]}
    assert mounts["data"] == "/var/lib/ls"
    data = rendered.config()
    assert data["LEADSTREAM_STORE"] == "rocksdb://"
    assert data["LEADSTREAM_DATA_DIR"] == "/var/lib/ls"
    headless = [s for s in rendered.all("Service") if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [sts["spec"]["serviceName"]]


def test_rocksdb_without_persistence_uses_the_tmp_emptydir(chart: helm.Chart) -> None:
    rendered = render(chart, SCENARIOS["rocksdb-emptydir"])
    assert rendered.workload()["kind"] == "Deployment"
    assert rendered.config()["LEADSTREAM_STORE"] == "rocksdb://"
    assert rendered.config()["LEADSTREAM_DATA_DIR"].startswith("/tmp/")  # noqa: S108 - emptyDir


# --- ServiceMonitor ------------------------------------------------------------------------------


def test_service_monitor_is_off_by_default(chart: helm.Chart) -> None:
    assert render(chart).all("ServiceMonitor") == []


@pytest.mark.parametrize("persistence", [False, True])
def test_service_monitor_scrapes_metrics_on_http(chart: helm.Chart, persistence: bool) -> None:
    rendered = render(
        chart,
        {
            "persistence": {"enabled": persistence},
            "metrics": {
                "serviceMonitor": {
                    "enabled": True,
                    "interval": "15s",
                    "labels": {"release": "prom"},
                }
            },
        },
    )
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
    # Exactly one Service is scraped (not the StatefulSet's headless one too), on a port named http.
    scraped = [
        s
        for s in rendered.all("Service")
        if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in scraped] == [f"{RELEASE}-leadstream"]
    assert "http" in {p["name"] for p in scraped[0]["spec"]["ports"]}


# --- KEDA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_replicas", "partitions", "expected"),
    [(12, 4, 4), (3, 4, 3), (8, 8, 8), (1, 16, 1), (100, 6, 6)],
)
def test_keda_max_replicas_never_exceed_partitions(
    chart: helm.Chart, max_replicas: int, partitions: int, expected: int
) -> None:
    rendered = render(
        chart,
        {
            "kafka": {"topicPartitions": partitions},
            "autoscaling": {"keda": {"enabled": True, "maxReplicaCount": max_replicas}},
        },
    )
    scaled = rendered.one("ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == expected
    assert scaled["spec"]["maxReplicaCount"] <= int(
        rendered.config()["LEADSTREAM_TOPIC_PARTITIONS"]
    )


@pytest.mark.parametrize("persistence", [False, True])
def test_keda_scaled_object_wiring(chart: helm.Chart, persistence: bool) -> None:
    rendered = render(
        chart,
        {
            "persistence": {"enabled": persistence},
            "kafka": {"bootstrap": "kafka:9092", "appId": "ls-prod"},
            "autoscaling": {"keda": {"enabled": True, "lagThreshold": 250}},
        },
    )
    scaled = rendered.one("ScaledObject")
    workload = rendered.workload()
    data = rendered.config()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": workload["kind"],
        "name": workload["metadata"]["name"],
    }
    assert "replicas" not in workload["spec"]  # KEDA owns the replica count
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert [t["metadata"]["topic"] for t in triggers] == [data[e] for e in INPUT_TOPIC_ENVS]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == data["LEADSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert meta["consumerGroup"] == data["LEADSTREAM_APP_ID"] == "ls-prod"
        assert meta["lagThreshold"] == "250"
        assert all(isinstance(value, str) for value in meta.values())


def test_keda_min_above_effective_max_fails(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="minReplicaCount"):
        render(
            chart,
            {
                "kafka": {"topicPartitions": 2},
                "autoscaling": {"keda": {"enabled": True, "minReplicaCount": 3}},
            },
        )


def test_keda_behavior_scales_one_pod_per_step_and_down_slowly(chart: helm.Chart) -> None:
    spec = render(chart, {"autoscaling": {"keda": {"enabled": True}}}).one("ScaledObject")["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    for direction in ("scaleUp", "scaleDown"):
        assert behavior[direction]["policies"], direction
        for policy in behavior[direction]["policies"]:
            assert policy["type"] == "Pods"
            assert policy["value"] == 1
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2}


def test_keda_behavior_and_fallback_are_configurable(chart: helm.Chart) -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 900,
            "selectPolicy": "Min",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 600}],
        }
    }
    keda_values = {
        "enabled": True,
        "behavior": behavior,
        "fallback": {"enabled": True, "failureThreshold": 5, "replicas": 3},
    }
    spec = render(chart, {"autoscaling": {"keda": keda_values}}).one("ScaledObject")["spec"]
    rendered_behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert rendered_behavior["scaleDown"] == behavior["scaleDown"]
    # Helm merges maps: the default scaleUp stays unless set to null.
    assert rendered_behavior["scaleUp"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 60}
    ]
    assert spec["fallback"] == {"failureThreshold": 5, "replicas": 3}


def test_keda_fallback_is_capped_and_optional(chart: helm.Chart) -> None:
    capped = render(
        chart,
        {
            "kafka": {"topicPartitions": 2},
            "autoscaling": {"keda": {"enabled": True, "fallback": {"replicas": 6}}},
        },
    ).one("ScaledObject")["spec"]
    assert capped["fallback"]["replicas"] == capped["maxReplicaCount"] == 2
    off = render(
        chart,
        {
            "autoscaling": {
                "keda": {"enabled": True, "behavior": None, "fallback": {"enabled": False}}
            }
        },
    ).one("ScaledObject")["spec"]
    assert "fallback" not in off
    assert "advanced" not in off


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"behavior": {"scaleDown": {"policies": [{"type": "Pod", "value": 1}]}}}, "type"),
        ({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 7200}}}, "stabilization"),
        ({"behavior": {"scaledown": {}}}, "scaledown"),
        ({"fallback": {"replicas": 0}}, "/autoscaling/keda/fallback/replicas"),
        ({"fallback": {"failureThreshold": "3"}}, "/autoscaling/keda/fallback/failureThreshold"),
    ],
)
def test_keda_behavior_and_fallback_schema(
    chart: helm.Chart, values: dict[str, Any], needle: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(needle)):
        render(chart, {"autoscaling": {"keda": {"enabled": True, **values}}})


def test_chart_readme_explains_the_cost_of_scaling() -> None:
    readme = " ".join((CHART_DIR / "README.md").read_text(encoding="utf-8").split())
    assert "rebalances the consumer group" in readme
    assert "replaying the changelog topics" in readme
    assert "rebuilt from the changelog at every start" in readme


# --- Grafana dashboard and PrometheusRule ----------------------------------------------------

ALERTS = {
    "LeadstreamLagging",
    "LeadstreamDeliveryPaused",
    "LeadstreamDeadLetters",
    "LeadstreamRetrying",
    "LeadstreamMetricsAbsent",
}
SEVERITIES = {"critical", "warning", "info"}


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings of a Markdown file (lower case, punctuation dropped)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        anchors.add(text.replace(" ", "-"))
    return anchors


def alerts(rendered: Rendered) -> dict[str, dict[str, Any]]:
    rule = rendered.one("PrometheusRule")
    found = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert len(found) == sum(len(group["rules"]) for group in rule["spec"]["groups"])
    return found


def test_dashboard_and_rules_are_off_by_default(chart: helm.Chart) -> None:
    rendered = render(chart)
    assert rendered.all("PrometheusRule") == []
    assert [doc for doc in rendered.all("ConfigMap") if DASHBOARD_KEY in doc["data"]] == []


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(chart: helm.Chart) -> None:
    rendered = render(chart, {"metrics": {"grafanaDashboard": {"enabled": True}}})
    dashboards = [doc for doc in rendered.all("ConfigMap") if DASHBOARD_KEY in doc["data"]]
    assert len(dashboards) == 1
    cm = dashboards[0]
    kubernetes_validate.validate(cm, KUBE_VERSION, strict=True)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["name"] != rendered.settings_configmap()["metadata"]["name"]
    # Shipped as is: the ConfigMap holds exactly the chart's dashboards/leadstream.json.
    assert json.loads(cm["data"][DASHBOARD_KEY]) == monitoring.load_dashboard()


def test_dashboard_label_namespace_and_annotations_are_configurable(chart: helm.Chart) -> None:
    values = {
        "enabled": True,
        "namespace": "monitoring",
        "label": "grafana.io/dashboard",
        "labelValue": "leadstream",
        "labels": {"team": "sre"},
        "annotations": {"grafana_folder": "Streams"},
    }
    rendered = render(chart, {"metrics": {"grafanaDashboard": values}})
    cm = next(doc for doc in rendered.all("ConfigMap") if DASHBOARD_KEY in doc["data"])
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana.io/dashboard"] == "leadstream"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["labels"]["team"] == "sre"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Streams"}


def test_dashboard_has_a_panel_for_each_view_and_parses() -> None:
    dashboard = monitoring.load_dashboard()
    assert dashboard["uid"] == "leadstream"
    titles = {panel["title"] for panel in monitoring.panels(dashboard) if panel["type"] != "row"}
    needed = {
        "leadstream_consumer_lag": "lag in records",
        "leadstream_consumer_lag_seconds": "lag in seconds",
        "leadstream_events_in_total": "throughput in",
        "leadstream_deliveries_total": "throughput out and delivery outcomes",
        "leadstream_conversions_built_total": "conversions by event",
        "leadstream_delivery_retries_total": "retries",
        "leadstream_destination_circuit_open": "circuit state",
        "leadstream_dead_letters_total": "dead letters by reason",
        "leadstream_table_keys": "table keys",
        "leadstream_api_request_seconds_bucket": "request latency",
    }
    used: set[str] = set()
    ids = []
    for panel in monitoring.panels(dashboard):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
    for expr in monitoring.dashboard_exprs(dashboard):
        used |= monitoring.series_names(expr)  # raises on invalid PromQL
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for series, view in needed.items():
        assert series in used, f"no panel shows {view} ({series})"
    assert "Circuit state" in titles
    assert monitoring.variable_metrics(dashboard) <= used


def test_promql_parser_rejects_bad_expressions() -> None:
    """The parser is a real one: broken expressions fail, so a passing rule is valid PromQL."""
    for bad in (
        "max by (topic (leadstream_consumer_lag)",
        "rate(leadstream_dead_letters_total)",  # rate needs a range vector
        "sum(leadstream_x) >",
        'absent(up{job="x"}',
    ):
        with pytest.raises(ValueError, match=r"."):
            monitoring.series_names(bad)


def test_prometheus_rule_renders_every_alert_with_its_annotations(chart: helm.Chart) -> None:
    rendered = render(
        chart,
        {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}}},
    )
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
    found = alerts(rendered)
    assert set(found) == ALERTS
    readme_anchors = github_anchors((REPO / "README.md").read_text(encoding="utf-8"))
    for name, alert in found.items():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert all(isinstance(v, str) and v.strip() for v in annotations.values()), name
        if "for" in alert:
            assert re.fullmatch(r"[0-9]+[smh]", alert["for"]), name
        base, anchor = annotations["runbook_url"].split("#")
        assert base == "README.md"
        assert anchor == f"runbook-{name.lower()}"
        assert anchor in readme_anchors, f"README.md has no section #{anchor}"
        names = monitoring.series_names(alert["expr"])  # raises on invalid PromQL
        assert names, name
        assert f'namespace="{NAMESPACE}"' in alert["expr"], f"{name} is not scoped"


def test_metrics_absent_alert_watches_the_scrape_target(chart: helm.Chart) -> None:
    expr = alerts(render(chart, {"metrics": {"prometheusRule": {"enabled": True}}}))[
        "LeadstreamMetricsAbsent"
    ]["expr"]
    assert expr == f'absent(up{{job="leadstream", namespace="{NAMESPACE}"}} == 1)'
    # The job a ServiceMonitor gives the targets: the value of its jobLabel on the Service.
    rendered = render(chart, {"metrics": {"serviceMonitor": {"enabled": True}}})
    job_label = rendered.one("ServiceMonitor")["spec"]["jobLabel"]
    service = next(s for s in rendered.all("Service") if "clusterIP" not in s["spec"])
    assert service["metadata"]["labels"][job_label] == "leadstream"
    custom = alerts(render(chart, {"metrics": {"prometheusRule": {"enabled": True, "job": "ls"}}}))
    assert 'job="ls"' in custom["LeadstreamMetricsAbsent"]["expr"]


def test_prometheus_rule_thresholds_labels_and_runbook_are_configurable(
    chart: helm.Chart,
) -> None:
    values = {
        "enabled": True,
        "namespace": "monitoring",
        "ruleLabels": {"team": "growth"},
        "runbookBaseUrl": "https://git.example.com/leadstream/blob/main/README.md",
        "lagSecondsThreshold": 300,
        "deadLettersPerHour": 5,
        "retriesPerSecond": 0.5,
    }
    rendered = render(chart, {"metrics": {"prometheusRule": values}})
    assert rendered.one("PrometheusRule")["metadata"]["namespace"] == "monitoring"
    found = alerts(rendered)
    assert found["LeadstreamLagging"]["expr"].endswith(" > 300")
    assert found["LeadstreamDeadLetters"]["expr"].endswith(" > 5")
    assert found["LeadstreamRetrying"]["expr"].endswith(" > 0.5")
    for name, alert in found.items():
        assert alert["labels"]["team"] == "growth"
        assert alert["annotations"]["runbook_url"] == (
            f"https://git.example.com/leadstream/blob/main/README.md#runbook-{name.lower()}"
        )
        # Still scoped to the release's pods, wherever the rule object lives.
        assert f'namespace="{NAMESPACE}"' in alert["expr"]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"grafanaDashboard": {"enabled": "yes"}}, "/metrics/grafanaDashboard/enabled"),
        ({"grafanaDashboard": {"labelValue": 1}}, "/metrics/grafanaDashboard/labelValue"),
        ({"grafanaDashboard": {"folder": "x"}}, "folder"),
        ({"prometheusRule": {"runbookBaseUrl": "README.md#x"}}, "runbookBaseUrl"),
        ({"prometheusRule": {"lagSecondsThreshold": 0}}, "lagSecondsThreshold"),
        ({"prometheusRule": {"severity": "page"}}, "severity"),
    ],
)
def test_monitoring_values_schema(chart: helm.Chart, values: dict[str, Any], needle: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(needle)):
        render(chart, {"metrics": values})


def test_readme_alert_examples_match_the_rule(chart: helm.Chart) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Alert examples", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    examples = {r["alert"] for r in yaml.safe_load(section)["groups"][0]["rules"]}
    assert examples == ALERTS
    for name in ALERTS:
        assert f"#### Runbook: {name}" in readme


# --- Kafka security ------------------------------------------------------------------------------

SASL_SSL_SCRAM: dict[str, Any] = {
    "securityProtocol": "SASL_SSL",
    "auth": {"mechanism": "SCRAM-SHA-512", "existingSecret": "kafka-credentials"},
}


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.workload()["spec"]["template"]["spec"]
    return spec


def mounted_file(rendered: Rendered, path: str) -> tuple[str, str]:
    """The (Secret, key) a file path of the container comes from, through a read-only mount."""
    directory, _, filename = path.rpartition("/")
    mounts = [m for m in rendered.container()["volumeMounts"] if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{directory} is not mounted once"
    assert mounts[0]["readOnly"] is True, f"{directory} is writable"
    volume = {v["name"]: v for v in pod_spec(rendered)["volumes"]}[mounts[0]["name"]]
    sources = (
        [source["secret"] for source in volume["projected"]["sources"]]
        if "projected" in volume
        else [{"name": volume["secret"]["secretName"], **volume["secret"]}]
    )
    found = [
        (source["name"], item["key"])
        for source in sources
        for item in source["items"]
        if item["path"] == filename
    ]
    assert len(found) == 1, f"{path} is not one file of the mount"
    return found[0]


def test_default_connection_is_plaintext_without_credentials(chart: helm.Chart) -> None:
    rendered = render(chart)
    assert rendered.config()["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    env = env_by_name(rendered.container())
    assert not {
        SASL_USERNAME_ENV,
        SASL_PASSWORD_ENV,
        SSL_KEY_PASSWORD_ENV,
        REGISTRY_AUTH_ENV,
    } & set(env)
    assert {v["name"] for v in pod_spec(rendered)["volumes"]} == {"tmp"}


def test_sasl_password_and_username_come_from_the_secret(chart: helm.Chart) -> None:
    rendered = render(chart, {"kafka": SASL_SSL_SCRAM})
    container = rendered.container()
    assert secret_ref(container, SASL_PASSWORD_ENV) == {
        "name": "kafka-credentials",
        "key": "password",
    }
    assert secret_ref(container, SASL_USERNAME_ENV) == {
        "name": "kafka-credentials",
        "key": "username",
    }
    data = rendered.config()
    assert data["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["LEADSTREAM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert SASL_USERNAME_ENV not in data
    # No TLS files without kafka.tls: SASL_SSL verifies against the system trust store.
    assert "LEADSTREAM_KAFKA_SSL_CA_LOCATION" not in data


def test_sasl_keys_are_configurable_and_a_plain_username_goes_to_the_configmap(
    chart: helm.Chart,
) -> None:
    kafka = copy.deepcopy(SASL_SSL_SCRAM)
    kafka["auth"] |= {"username": "svc-leadstream", "passwordKey": "sasl-password"}
    rendered = render(chart, {"kafka": kafka})
    assert rendered.config()[SASL_USERNAME_ENV] == "svc-leadstream"
    assert SASL_USERNAME_ENV not in env_by_name(rendered.container())
    assert secret_ref(rendered.container(), SASL_PASSWORD_ENV) == {
        "name": "kafka-credentials",
        "key": "sasl-password",
    }
    kafka["auth"] = {**SASL_SSL_SCRAM["auth"], "usernameKey": "user"}
    from_secret = render(chart, {"kafka": kafka}).container()
    assert secret_ref(from_secret, SASL_USERNAME_ENV)["key"] == "user"


@pytest.mark.parametrize(
    ("tls", "files"),
    [
        # Aiven: one Secret with the service files.
        (
            {
                "existingSecret": "aiven",
                "caKey": "ca.pem",
                "certKey": "service.cert",
                "keyKey": "service.key",
            },
            {
                "CA": ("aiven", "ca.pem"),
                "CERTIFICATE": ("aiven", "service.cert"),
                "KEY": ("aiven", "service.key"),
            },
        ),
        # Strimzi: the KafkaUser's Secret and the cluster CA's.
        (
            {
                "existingSecret": "my-user",
                "caExistingSecret": "my-cluster-cluster-ca-cert",
                "certKey": "user.crt",
                "keyKey": "user.key",
            },
            {
                "CA": ("my-cluster-cluster-ca-cert", "ca.crt"),
                "CERTIFICATE": ("my-user", "user.crt"),
                "KEY": ("my-user", "user.key"),
            },
        ),
        # A private CA only.
        ({"caExistingSecret": "private-ca"}, {"CA": ("private-ca", "ca.crt")}),
        (
            {"existingSecret": "tls", "certKey": "", "keyKey": ""},
            {"CA": ("tls", "ca.crt")},
        ),
        # Client certificate only, CA from the system trust store.
        (
            {"existingSecret": "client", "caKey": ""},
            {"CERTIFICATE": ("client", "tls.crt"), "KEY": ("client", "tls.key")},
        ),
    ],
)
def test_tls_files_are_mounted_read_only_where_the_settings_point(
    chart: helm.Chart, tls: dict[str, str], files: dict[str, tuple[str, str]]
) -> None:
    rendered = render(
        chart, {"kafka": {"securityProtocol": "SSL", "tls": {"enabled": True, **tls}}}
    )
    data = rendered.config()
    locations = {
        kind: data.get(f"LEADSTREAM_KAFKA_SSL_{kind}_LOCATION")
        for kind in ("CA", "CERTIFICATE", "KEY")
    }
    assert {kind for kind, path in locations.items() if path} == set(files)
    for kind, source in files.items():
        path = locations[kind]
        assert path is not None
        assert path.startswith(KAFKA_TLS_DIR + "/")
        assert mounted_file(rendered, path) == source
    volume = {v["name"]: v for v in pod_spec(rendered)["volumes"]}["kafka-tls"]
    assert volume["projected"]["defaultMode"] == 0o440
    # Nothing but the locations reaches the ConfigMap.
    assert not any("BEGIN" in value for value in data.values())
    assert SSL_KEY_PASSWORD_ENV not in env_by_name(rendered.container())


def test_tls_key_password_comes_from_the_secret(chart: helm.Chart) -> None:
    rendered = render(
        chart,
        {
            "kafka": {
                "securityProtocol": "SSL",
                "tls": {"enabled": True, "existingSecret": "client", "keyPasswordKey": "pw"},
            }
        },
    )
    assert secret_ref(rendered.container(), SSL_KEY_PASSWORD_ENV) == {
        "name": "client",
        "key": "pw",
    }
    assert SSL_KEY_PASSWORD_ENV not in rendered.config()


@pytest.mark.parametrize("check", [True, False])
def test_hostname_verification_switch(chart: helm.Chart, check: bool) -> None:
    data = render(chart, {"kafka": {"securityProtocol": "SSL", "tls": {"checkHostname": check}}})
    assert data.config()["LEADSTREAM_KAFKA_SSL_CHECK_HOSTNAME"] == str(check).lower()


def test_schema_registry_basic_auth_and_ca_come_from_secrets(chart: helm.Chart) -> None:
    rendered = render(
        chart,
        {
            "schemaRegistry": {
                "url": "https://registry.example.com",
                "existingSecret": "registry",
                "basicAuthKey": "user-info",
                "tls": {"existingSecret": "registry-ca", "caKey": "ca.pem"},
            }
        },
    )
    assert secret_ref(rendered.container(), REGISTRY_AUTH_ENV) == {
        "name": "registry",
        "key": "user-info",
    }
    data = rendered.config()
    assert REGISTRY_AUTH_ENV not in data
    ca = data["LEADSTREAM_SCHEMA_REGISTRY_CA_LOCATION"]
    assert ca.startswith(REGISTRY_TLS_DIR + "/")
    assert mounted_file(rendered, ca) == ("registry-ca", "ca.pem")
    plain = render(chart)
    assert "LEADSTREAM_SCHEMA_REGISTRY_CA_LOCATION" not in plain.config()
    assert REGISTRY_AUTH_ENV not in env_by_name(plain.container())


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"securityProtocol": "SASL_SSL"}, "needs kafka.auth.mechanism"),
        (
            {"securityProtocol": "SASL_PLAINTEXT", "auth": {"mechanism": "PLAIN"}},
            "needs kafka.auth.existingSecret",
        ),
        (
            {
                "securityProtocol": "SASL_SSL",
                "auth": {"mechanism": "PLAIN", "existingSecret": "s", "usernameKey": ""},
            },
            "kafka.auth.username or kafka.auth.usernameKey",
        ),
        ({"auth": {"mechanism": "PLAIN"}}, "does not use SASL"),
        ({"securityProtocol": "SSL", "auth": {"existingSecret": "s"}}, "does not use SASL"),
        ({"tls": {"enabled": True, "existingSecret": "t"}}, "needs kafka.securityProtocol SSL"),
        (
            {
                "securityProtocol": "SASL_PLAINTEXT",
                "auth": {"mechanism": "PLAIN", "existingSecret": "s"},
                "tls": {"enabled": True, "existingSecret": "t"},
            },
            "needs kafka.securityProtocol SSL",
        ),
        ({"securityProtocol": "SSL", "tls": {"enabled": True}}, "mounts nothing"),
        (
            {
                "securityProtocol": "SSL",
                "tls": {"enabled": True, "caExistingSecret": "c", "caKey": ""},
            },
            "mounts nothing",
        ),
        (
            {
                "securityProtocol": "SSL",
                "tls": {"enabled": True, "existingSecret": "t", "keyKey": ""},
            },
            "go together",
        ),
        (
            {
                "securityProtocol": "SSL",
                "tls": {"enabled": True, "caExistingSecret": "c", "keyPasswordKey": "pw"},
            },
            "needs a client key",
        ),
        ({"securityProtocol": "SSL", "tls": {"existingSecret": "t"}}, "kafka.tls.enabled=true"),
    ],
)
def test_inconsistent_kafka_security_fails_with_a_reason(
    chart: helm.Chart, kafka: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(chart, {"kafka": kafka})


# --- KEDA TriggerAuthentication ------------------------------------------------------------------

KEDA_AUTH_PARAMETERS = {"username", "password", "ca", "cert", "key", "keyPassword"}


def keda(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "autoscaling": {"keda": {"enabled": True}}}


def auth_refs(rendered: Rendered) -> dict[str, tuple[str, str]]:
    auth = rendered.one("TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) <= KEDA_AUTH_PARAMETERS
    return refs


def test_trigger_authentication_is_built_from_the_workers_secrets(chart: helm.Chart) -> None:
    rendered = render(chart, ALL_ON)
    auth = rendered.one("TriggerAuthentication")
    refs = auth_refs(rendered)
    container = rendered.container()
    data = rendered.config()
    sasl_password = secret_ref(container, SASL_PASSWORD_ENV)
    key_password = secret_ref(container, SSL_KEY_PASSWORD_ENV)
    assert refs == {
        "password": (sasl_password["name"], sasl_password["key"]),
        "ca": mounted_file(rendered, data["LEADSTREAM_KAFKA_SSL_CA_LOCATION"]),
        "cert": mounted_file(rendered, data["LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION"]),
        "key": mounted_file(rendered, data["LEADSTREAM_KAFKA_SSL_KEY_LOCATION"]),
        "keyPassword": (key_password["name"], key_password["key"]),
    }
    # The plain username is read by KEDA from the container's environment (the ConfigMap).
    assert auth["spec"]["env"] == [
        {"parameter": "username", "name": SASL_USERNAME_ENV, "containerName": "leadstream"}
    ]
    assert container["name"] == "leadstream"
    assert data[SASL_USERNAME_ENV] == "leadstream"
    for trigger in rendered.one("ScaledObject")["spec"]["triggers"]:
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"


def test_trigger_authentication_takes_the_username_from_the_secret(chart: helm.Chart) -> None:
    rendered = render(chart, keda({"kafka": SASL_SSL_SCRAM}))
    refs = auth_refs(rendered)
    username = secret_ref(rendered.container(), SASL_USERNAME_ENV)
    assert refs == {
        "username": (username["name"], username["key"]),
        "password": ("kafka-credentials", "password"),
    }
    assert "env" not in rendered.one("TriggerAuthentication")["spec"]


@pytest.mark.parametrize(
    ("mechanism", "keda_sasl"),
    [("PLAIN", "plaintext"), ("SCRAM-SHA-256", "scram_sha256"), ("SCRAM-SHA-512", "scram_sha512")],
)
@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_trigger_sasl_and_tls_follow_the_worker(
    chart: helm.Chart, mechanism: str, keda_sasl: str, protocol: str
) -> None:
    values = {
        "kafka": {
            "securityProtocol": protocol,
            "auth": {"mechanism": mechanism, "existingSecret": "kafka-credentials"},
        }
    }
    for trigger in render(chart, keda(values)).one("ScaledObject")["spec"]["triggers"]:
        assert trigger["metadata"]["sasl"] == keda_sasl
        assert ("tls" in trigger["metadata"]) == (protocol == "SASL_SSL")


@pytest.mark.parametrize("scenario", ["confluent-cloud", "msk-scram", "aiven-mtls", "strimzi-mtls"])
def test_trigger_authentication_is_referenced_when_kafka_needs_credentials(
    chart: helm.Chart, scenario: str
) -> None:
    rendered = render(chart, SCENARIOS[scenario])
    name = rendered.one("TriggerAuthentication")["metadata"]["name"]
    assert name == f"{RELEASE}-leadstream"
    triggers = rendered.one("ScaledObject")["spec"]["triggers"]
    assert [t["authenticationRef"] for t in triggers] == [{"name": name}] * 3
    assert auth_refs(rendered)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"kafka": {"securityProtocol": "SSL"}},  # public CA: tls=enable, nothing secret
        {"schemaRegistry": {"existingSecret": "registry"}},  # the registry is not KEDA's business
    ],
)
def test_no_trigger_authentication_without_kafka_credentials(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    rendered = render(chart, keda(values))
    assert rendered.all("TriggerAuthentication") == []
    for trigger in rendered.one("ScaledObject")["spec"]["triggers"]:
        assert "authenticationRef" not in trigger
        assert "sasl" not in trigger["metadata"]
        assert (trigger["metadata"].get("tls") == "enable") == bool(values.get("kafka"))


def test_no_trigger_authentication_without_keda(chart: helm.Chart) -> None:
    values = {k: v for k, v in ALL_ON.items() if k != "autoscaling"}
    assert render(chart, values).all("TriggerAuthentication") == []


def test_own_authentication_ref_replaces_the_charts(chart: helm.Chart) -> None:
    values = keda({"kafka": SASL_SSL_SCRAM})
    values["autoscaling"]["keda"]["authenticationRef"] = "my-kafka-auth"
    rendered = render(chart, values)
    assert rendered.all("TriggerAuthentication") == []
    for trigger in rendered.one("ScaledObject")["spec"]["triggers"]:
        assert trigger["authenticationRef"] == {"name": "my-kafka-auth"}


# --- NetworkPolicy -------------------------------------------------------------------------------


def ingress_peers(rendered: Rendered) -> list[dict[str, Any]]:
    policy = rendered.one("NetworkPolicy")
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    rules = policy["spec"]["ingress"]
    assert rules[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers: list[dict[str, Any]] = rules[0]["from"]
    return peers


def namespace_allowed(peer: dict[str, Any], namespace: str) -> bool:
    selector = peer.get("namespaceSelector")
    return selector is not None and selects(selector, {"kubernetes.io/metadata.name": namespace})


@pytest.mark.parametrize("persistence", [False, True])
def test_network_policy_admits_only_http_from_the_release_and_monitoring(
    chart: helm.Chart, persistence: bool
) -> None:
    rendered = render(chart, {"persistence": {"enabled": persistence}})
    policy = rendered.one("NetworkPolicy")
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    pod_labels = rendered.workload()["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], pod_labels)
    # Ingress only: egress (Kafka, registry, Events API) stays unrestricted.
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]
    assert len(policy["spec"]["ingress"]) == 1
    # The port named http is the container's health and metrics port.
    assert rendered.container()["ports"][0]["name"] == "http"
    peers = ingress_peers(rendered)
    same_release = [p for p in peers if "namespaceSelector" not in p]
    assert len(same_release) == 1
    assert selects(same_release[0]["podSelector"], pod_labels)
    assert not selects(
        same_release[0]["podSelector"], {**pod_labels, "app.kubernetes.io/instance": "other"}
    )
    assert any(namespace_allowed(p, "monitoring") for p in peers)
    assert not any(namespace_allowed(p, "default") for p in peers)


def test_network_policy_namespaces_are_configurable(chart: helm.Chart) -> None:
    rendered = render(chart, ALL_ON)
    peers = ingress_peers(rendered)
    for namespace in ("monitoring", "ops"):
        assert any(namespace_allowed(p, namespace) for p in peers)
    assert not any(namespace_allowed(p, "default") for p in peers)
    by_label = [p for p in peers if p.get("namespaceSelector") == {"matchLabels": {"team": "sre"}}]
    assert len(by_label) == 1
    for peer in peers:
        if "namespaceSelector" in peer:
            assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    only_release = render(chart, {"networkPolicy": {"ingressNamespaces": []}})
    assert [set(p) for p in ingress_peers(only_release)] == [{"podSelector"}]


def test_network_policy_extra_ingress_and_opt_out(chart: helm.Chart) -> None:
    extra = {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 6066}]}
    policy = render(chart, {"networkPolicy": {"extraIngress": [extra]}}).one("NetworkPolicy")
    assert policy["spec"]["ingress"][1] == extra
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    assert render(chart, SCENARIOS["no-network-policy"]).all("NetworkPolicy") == []


# --- the README's worked examples ----------------------------------------------------------------


def _readme_examples() -> list[tuple[str, str]]:
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n# (values-[a-z0-9-]+\.yaml)\n(.*?)```", readme, flags=re.DOTALL)


def test_readme_has_the_worked_examples() -> None:
    names = [name for name, _ in _readme_examples()]
    assert names == [
        "values-confluent-cloud.yaml",
        "values-msk.yaml",
        "values-aiven.yaml",
        "values-strimzi-scram.yaml",
        "values-strimzi-mtls.yaml",
    ]


@pytest.mark.parametrize(("name", "text"), _readme_examples(), ids=lambda v: str(v)[:30])
def test_readme_examples_render_and_validate(chart: helm.Chart, name: str, text: str) -> None:
    values = yaml.safe_load(text)
    rendered = render(chart, keda(values))
    for doc in rendered.docs:
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    data = rendered.config()
    assert data["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] in {"SSL", "SASL_SSL"}
    assert auth_refs(rendered)
    # Every Secret the example names has its `kubectl create secret` command beside it.
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    secrets = {
        ref["name"] for ref in rendered.one("TriggerAuthentication")["spec"]["secretTargetRef"]
    }
    for secret in secrets:
        assert re.search(rf"kubectl .*create secret generic {re.escape(secret)} ", readme), (
            f"{name}: no kubectl command creates {secret}"
        )


# --- documentation -------------------------------------------------------------------------------


def _documented_params() -> list[str]:
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    return re.findall(r"^\s*## @param (\S+) \S", text, flags=re.MULTILINE)


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_every_value_is_documented_with_param(chart: helm.Chart) -> None:
    params = _documented_params()
    assert len(params) == len(set(params)), "a @param is documented twice"
    values = chart.values
    for path in params:
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"@param {path} is not a value"
            node = node[part]
    documented = set(params)
    for leaf in _leaf_paths(values):
        parts = leaf.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        assert ancestors & documented, f"value {leaf} has no @param"
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    assert text.count("## @section ") >= 10


def test_readme_lists_every_parameter() -> None:
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    for path in _documented_params():
        assert f"| `{path}` |" in readme, f"README.md lacks {path}"


def test_every_config_value_names_its_variable() -> None:
    """Each @param of a setting names the LEADSTREAM_* variable it becomes, and all are named."""
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    named = set(re.findall(r"\((LEADSTREAM_[A-Z_]+)\)", text))
    assert named == settings_env_names() - {SECRET_ENV}
