"""Helm chart: rendered by Helm's own engine (helm-python-sdk), checked against Kubernetes schemas.

No helm binary, cluster or network: ``helm_python`` binds Helm's Go SDK, ``kubernetes_validate``
ships the Kubernetes JSON schemas. CRDs (ServiceMonitor, ScaledObject) have no schema there, so
their fields are asserted directly.
"""

from __future__ import annotations

import base64
import copy
import hashlib
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

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "leadstream"
RELEASE = "ls"
NAMESPACE = "leadstream-test"
# The newest Kubernetes minor kubernetes-validate 1.37.0 ships schemas for.
KUBE_VERSION = "1.37.0"
CRD_KINDS = {"ServiceMonitor", "ScaledObject"}
SECRET_ENV = "LEADSTREAM_TIKTOK_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
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
        }
    },
    "autoscaling": {
        "keda": {
            "enabled": True,
            "maxReplicaCount": 12,
            "lagThreshold": 500,
            "authenticationRef": "kafka-sasl",
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
    "schemaRegistry": {"url": "http://registry:8081", "schemaDir": "/custom/schemas"},
    "rules": {"stageMap": {"mql": "QualifiedLead", "won": "Purchase"}},
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
    "keda": {"autoscaling": {"keda": {"enabled": True}}},
    "keda-statefulset": {
        "autoscaling": {"keda": {"enabled": True}},
        "persistence": {"enabled": True},
    },
    "existing-secret": {"tiktok": {"existingSecret": "tiktok-credentials"}},
    "created-secret": {"tiktok": {"accessToken": "s3cr3t-token"}},
    "extra-env": {"extraEnv": [{"name": "LEADSTREAM_LOG_LEVEL", "value": "DEBUG"}]},
    "no-pdb-no-sa": {"pdb": {"create": False}, "serviceAccount": {"create": False}},
    "image-digest": {"image": {"digest": "sha256:" + "a" * 64}},
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

    def config(self) -> dict[str, str]:
        return self.one("ConfigMap")["data"]

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
    return {f"LEADSTREAM_{name.upper()}" for name in Settings.model_fields}


# --- lint and schema validation ----------------------------------------------------------------


def test_chart_metadata_matches_the_package(chart: helm.Chart) -> None:
    meta = chart.metadata
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "leadstream"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0" == project["version"]


@pytest.mark.parametrize("scenario", ["defaults", "all-on", "persistence", "created-secret"])
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
        "ScaledObject",
    }
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
    assert set(data) == settings_env_names() - {SECRET_ENV}
    assert SECRET_ENV not in render(chart, SCENARIOS["created-secret"]).config()


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
    assert from_chart.model_dump() == baseline.model_dump()
    # Optional settings that are empty by default stay unset rather than "".
    for optional in (
        "LEADSTREAM_STAGE_MAP",
        "LEADSTREAM_TIKTOK_PIXEL_CODE",
        "LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID",
        "LEADSTREAM_TIKTOK_TEST_EVENT_CODE",
        "LEADSTREAM_SCHEMA_DIR",
    ):
        assert optional not in data


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
        assert refs == [rendered.one("ConfigMap")["metadata"]["name"]]


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
    assert names == [SECRET_ENV, "EXTRA_ONE"]
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
