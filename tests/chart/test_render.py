"""What `helm template` makes of the chart for each value set: the behaviour DESIGN §8 promises."""

from __future__ import annotations

import ipaddress
import re

import pytest

from offload_core.queue.routing import consumed_by
from tests.chart.chartkit import (
    KEDA_API,
    NAMESPACE,
    RELEASE,
    REPO,
    SERVICES,
    Helm,
    Rendered,
)

WORKERS = {"worker-ocr": "ocr", "worker-llm": "llm"}


def test_every_service_gets_a_deployment_service_pdb_and_serviceaccount(renders: dict[str, Rendered]) -> None:
    for name, rendered in renders.items():
        for service in SERVICES:
            full = f"{RELEASE}-offload-{service}"
            for kind in ("Deployment", "Service", "ServiceAccount"):
                assert rendered.has(kind, full), f"{name}: no {kind} {full}"
        if name != "example:kind.yaml":  # the kind values turn PDBs off
            assert len(rendered.of_kind("PodDisruptionBudget")) == 4, name


def test_keda_api_present_gives_each_worker_a_scaledobject_summing_its_three_priority_lists(
        renders: dict[str, Rendered]) -> None:
    rendered = renders["keda"]
    for service, job_type in WORKERS.items():
        so = rendered.get("ScaledObject", f"{RELEASE}-offload-{service}")
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] == f"{RELEASE}-offload-{service}"
        triggers = spec["triggers"]
        # Every queue the worker takes but the probes' (consumed_by: the LLM workers run embeddings too).
        assert [t["metadata"]["listName"] for t in triggers] == [
            q for q in consumed_by(job_type) if not q.startswith("probe.")]
        assert all(t["type"] == "redis" for t in triggers)
        names = [t["name"] for t in triggers]
        formula = spec["advanced"]["scalingModifiers"]["formula"]
        assert sorted(re.findall(r"[a-z_]+", formula)) == sorted(names), "the formula must add up every trigger"
        assert "+" in formula and "*" not in formula
        assert spec["advanced"]["scalingModifiers"]["target"] == ("5" if job_type == "ocr" else "8")
        # KEDA owns the replica count: the Deployment must not fight it on every upgrade.
        assert "replicas" not in rendered.deployment(service)["spec"]
        auth = triggers[0]["authenticationRef"]["name"]
        ta = rendered.get("TriggerAuthentication", auth)
        assert ta["spec"]["secretTargetRef"] == [
            {"parameter": "password", "name": f"{RELEASE}-offload-redis", "key": "redis-password"}]
        assert triggers[0]["metadata"]["address"] == f"{RELEASE}-offload-redis.{NAMESPACE}.svc:6379"


@pytest.mark.parametrize("value_set", ["defaults", "keda-disabled"])
def test_without_keda_the_workers_run_a_plain_replica_count(renders: dict[str, Rendered], value_set: str) -> None:
    rendered = renders[value_set]
    assert rendered.of_kind("ScaledObject") == [] and rendered.of_kind("TriggerAuthentication") == []
    for service in WORKERS:
        assert rendered.deployment(service)["spec"]["replicas"] == 1


def test_scale_to_zero_values_reach_the_scaledobject(renders: dict[str, Rendered]) -> None:
    for service in WORKERS:
        spec = renders["scale-to-zero"].get("ScaledObject", f"{RELEASE}-offload-{service}")["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 3, 45)
        assert spec["advanced"]["scalingModifiers"]["target"] == "2"
        assert spec["advanced"]["scalingModifiers"]["activationTarget"] == "1"
        assert {t["metadata"]["listLength"] for t in spec["triggers"]} == {"2"}
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
        assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


def test_worker_grace_period_lets_the_longest_job_finish(helm: Helm) -> None:
    values = {"config": {"ocr": {"softTimeLimitSeconds": 1000, "hardTimeLimitSeconds": 1200},
                         "visibilityTimeoutSeconds": 3000, "workerShutdownTimeoutSeconds": 45}}
    rendered = helm.template(values)
    ocr = rendered.deployment("worker-ocr")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    llm = rendered.deployment("worker-llm")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert ocr == 1200 + 45 + 30
    assert llm == 660 + 45 + 30
    explicit = helm.template({"components": {"workerLlm": {"terminationGracePeriodSeconds": 700}}})
    assert explicit.deployment("worker-llm")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 700


def test_bundled_redis_is_a_statefulset_with_aof_on_a_volume_and_a_password(renders: dict[str, Rendered]) -> None:
    rendered = renders["defaults"]
    sts = rendered.get("StatefulSet", f"{RELEASE}-offload-redis")
    conf = rendered.get("ConfigMap", f"{RELEASE}-offload-redis")["data"]["redis.conf"]
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    secret = rendered.get("Secret", f"{RELEASE}-offload-redis")
    assert len(secret["data"]["redis-password"]) > 20
    # The services build their URL from the same Secret; the variable must come first to expand.
    for service in SERVICES:
        env = [e["name"] for e in rendered.container(service)["env"]]
        assert env.index("REDIS_PASSWORD") < env.index("OFFLOAD_REDIS_URL")
        url = rendered.env(service)["OFFLOAD_REDIS_URL"]["value"]
        assert url == f"redis://:$(REDIS_PASSWORD)@{RELEASE}-offload-redis:6379/0"


def test_external_redis_comes_from_the_users_secret_and_keda_reads_it_there(renders: dict[str, Rendered]) -> None:
    rendered = renders["external-redis"]
    assert rendered.of_kind("StatefulSet") == []
    assert not rendered.has("Secret", f"{RELEASE}-offload-redis")
    for service in SERVICES:
        ref = rendered.env(service)["OFFLOAD_REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "ext-redis", "key": "url"}
        assert "REDIS_PASSWORD" not in rendered.env(service)
    so = rendered.get("ScaledObject", f"{RELEASE}-offload-worker-ocr")
    meta = so["spec"]["triggers"][0]["metadata"]
    assert (meta["address"], meta["enableTLS"], meta["databaseIndex"]) == ("redis.example.internal:6380", "true", "2")
    ta = rendered.get("TriggerAuthentication", so["spec"]["triggers"][0]["authenticationRef"]["name"])
    assert ta["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "ext-redis", "key": "password"}]
    policy = rendered.get("NetworkPolicy", f"{RELEASE}-offload-gateway")
    redis_rule = [r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 6380]
    assert redis_rule, "egress must open the external Redis's port"


def test_external_redis_without_a_password_needs_no_trigger_authentication(helm: Helm) -> None:
    values = {"redis": {"enabled": False}, "externalRedis": {"existingSecret": "r", "address": "r.example:6379"}}
    rendered = helm.template(values, api_versions=(KEDA_API,))
    assert rendered.of_kind("TriggerAuthentication") == []
    assert all("authenticationRef" not in t for so in rendered.of_kind("ScaledObject") for t in so["spec"]["triggers"])


def test_pods_are_locked_down(renders: dict[str, Rendered]) -> None:
    for name, rendered in renders.items():
        pods = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in rendered.of_kind("Deployment")]
        pods += [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in rendered.of_kind("StatefulSet")]
        pods += [(d["metadata"]["name"], d["spec"]) for d in rendered.of_kind("Pod")]
        assert pods
        for pod_name, pod in pods:
            where = f"{name}/{pod_name}"
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert sc["runAsUser"] >= 10000, where
                if name != "example:kind.yaml":  # kind's API pods take synced sources
                    assert sc["readOnlyRootFilesystem"] is True, where
                assert c["resources"]["requests"] and c["resources"]["limits"], where


def test_every_service_is_probed_on_healthz_and_readyz(renders: dict[str, Rendered]) -> None:
    rendered = renders["defaults"]
    for service in SERVICES:
        c = rendered.container(service)
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert c["livenessProbe"]["httpGet"]["port"] == c["ports"][0]["name"]


def test_only_the_status_service_gets_a_token_and_it_may_only_read(renders: dict[str, Rendered]) -> None:
    rendered = renders["keda"]
    for service in SERVICES:
        mounts = rendered.deployment(service)["spec"]["template"]["spec"]["automountServiceAccountToken"]
        assert mounts is (service == "status"), service
    role = rendered.get("Role", f"{RELEASE}-offload-status")
    assert role["metadata"]["namespace"] == NAMESPACE
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs == {"get", "list", "watch"}
    resources = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert resources == {("apps", "deployments"), ("keda.sh", "scaledobjects")}
    binding = rendered.get("RoleBinding", f"{RELEASE}-offload-status")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-offload-status", "namespace": NAMESPACE}]
    assert rendered.of_kind("ClusterRole") == [] and rendered.of_kind("ClusterRoleBinding") == []


def test_the_status_service_reads_its_own_releases_workers_in_its_own_namespace(
        renders: dict[str, Rendered], helm: Helm) -> None:
    rendered = renders["keda"]
    env = rendered.env("status")
    assert env["OFFLOAD_K8S_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["OFFLOAD_K8S_RELEASE"]["value"] == RELEASE
    # The release it names is the instance label the workers and their ScaledObjects carry.
    for service in WORKERS:
        assert rendered.deployment(service)["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        so = rendered.get("ScaledObject", f"{RELEASE}-offload-{service}")
        assert so["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert so["metadata"]["labels"]["app.kubernetes.io/component"] == service
    without_rbac = helm.template({"components": {"status": {"rbac": {"create": False}}}})
    assert without_rbac.of_kind("Role") == []
    assert not {"OFFLOAD_K8S_NAMESPACE", "OFFLOAD_K8S_RELEASE"} & set(without_rbac.env("status"))
    assert without_rbac.deployment("status")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def _rule_ports(rule: dict) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_open_what_each_component_needs(renders: dict[str, Rendered]) -> None:
    rendered = renders["keda"]
    deny = rendered.get("NetworkPolicy", f"{RELEASE}-offload-default-deny")
    assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "offload",
                                                          "app.kubernetes.io/instance": RELEASE}
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    for service, port in {"gateway": 8000, "status": 8001}.items():
        policy = rendered.get("NetworkPolicy", f"{RELEASE}-offload-{service}")
        assert [_rule_ports(r) for r in policy["spec"]["ingress"]] == [{port}]
    for service in WORKERS:
        policy = rendered.get("NetworkPolicy", f"{RELEASE}-offload-{service}")
        (ingress,) = policy["spec"]["ingress"]
        assert _rule_ports(ingress) == {9100}
        assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        webhook = [r for r in policy["spec"]["egress"] if any("ipBlock" in t for t in r.get("to", []))]
        (block,) = [t["ipBlock"] for t in webhook[0]["to"]]
        assert block["cidr"] == "0.0.0.0/0"
        assert ipaddress.ip_network("10.0.0.0/8") in [ipaddress.ip_network(c) for c in block["except"]]
    llm = rendered.get("NetworkPolicy", f"{RELEASE}-offload-worker-llm")
    ocr = rendered.get("NetworkPolicy", f"{RELEASE}-offload-worker-ocr")
    assert any(_rule_ports(r) == {80, 443, 8080} for r in llm["spec"]["egress"])
    assert not any(8080 in _rule_ports(r) for r in ocr["spec"]["egress"])
    status = rendered.get("NetworkPolicy", f"{RELEASE}-offload-status")
    assert any(_rule_ports(r) == {443, 6443} for r in status["spec"]["egress"])
    gateway = rendered.get("NetworkPolicy", f"{RELEASE}-offload-gateway")
    assert not any(443 in _rule_ports(r) for r in gateway["spec"]["egress"])
    redis = rendered.get("NetworkPolicy", f"{RELEASE}-offload-redis")
    assert "egress" not in redis["spec"]
    keda_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    assert keda_peer in redis["spec"]["ingress"][0]["from"]


def test_webhook_egress_can_be_turned_off(helm: Helm) -> None:
    rendered = helm.template({"networkPolicy": {"webhooks": {"enabled": False}}})
    policy = rendered.get("NetworkPolicy", f"{RELEASE}-offload-worker-ocr")
    assert not any("ipBlock" in t for r in policy["spec"]["egress"] for t in r.get("to", []))


def test_optional_components_render_when_enabled(renders: dict[str, Rendered]) -> None:
    rendered = renders["everything-on"]
    ingress = rendered.get("Ingress", f"{RELEASE}-offload")
    backends = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["spec"]["rules"]}
    assert backends == {"api.example.com": f"{RELEASE}-offload-gateway", "jobs.example.com": f"{RELEASE}-offload-status"}
    monitors = rendered.of_kind("ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == sorted(f"{RELEASE}-offload-{s}" for s in SERVICES)
    assert all(m["metadata"]["labels"]["release"] == "prometheus" for m in monitors)
    for monitor in monitors:
        service = rendered.get("Service", monitor["metadata"]["name"])
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["spec"]["selector"].items()
        assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    config = rendered.get("ConfigMap", f"{RELEASE}-offload-config")["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4317"
    assert config["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
    assert config["OFFLOAD_STATUS_PUBLIC_URL"] == "https://jobs.example.com"
    assert config["OFFLOAD_GATEWAY_PUBLIC_URL"] == "https://api.example.com"
    assert config["OFFLOAD_ADMIN_TENANTS"] == "ops,sre"
    assert config["OFFLOAD_WEBHOOK_ALLOWLIST"] == "10.1.0.0/16,hooks.internal"
    attrs = rendered.env("gateway")["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    assert "deployment.environment=test" in attrs and "k8s.pod.name=$(K8S_POD_NAME)" in attrs
    assert rendered.env("worker-llm")["OFFLOAD_LLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-key", "key": "api-key"}
    assert rendered.env("worker-ocr")["OFFLOAD_ACCESS_LOG"]["value"] == "0"
    spread = rendered.deployment("status")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "status"
    # apiFrom restricts the API ports; helm test must still get through.
    ingress_from = rendered.get("NetworkPolicy", f"{RELEASE}-offload-gateway")["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "offload", "app.kubernetes.io/instance": RELEASE,
                                            "app.kubernetes.io/component": "test"}}} in ingress_from


def test_optional_components_stay_out_by_default(renders: dict[str, Rendered]) -> None:
    rendered = renders["defaults"]
    assert rendered.of_kind("Ingress") == [] and rendered.of_kind("ServiceMonitor") == []
    config = rendered.get("ConfigMap", f"{RELEASE}-offload-config")["data"]
    assert not any(k.startswith("OTEL_") for k in config), "no endpoint means no exporter settings at all"
    assert config["OFFLOAD_STATUS_PUBLIC_URL"] == f"http://{RELEASE}-offload-status.{NAMESPACE}.svc:8001"
    assert config["OFFLOAD_GATEWAY_PUBLIC_URL"] == f"http://{RELEASE}-offload-gateway.{NAMESPACE}.svc:8000"


def test_a_component_override_of_false_wins_over_the_default(helm: Helm) -> None:
    rendered = helm.template({"components": {"status": {"podDisruptionBudget": {"enabled": False},
                                                        "securityContext": {"readOnlyRootFilesystem": False}}}})
    assert not rendered.has("PodDisruptionBudget", f"{RELEASE}-offload-status")
    assert rendered.has("PodDisruptionBudget", f"{RELEASE}-offload-gateway")
    assert rendered.container("status")["securityContext"]["readOnlyRootFilesystem"] is False
    assert rendered.container("status")["securityContext"]["runAsNonRoot"] is True
    assert rendered.container("gateway")["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_disabled_component_leaves_nothing_behind(helm: Helm) -> None:
    rendered = helm.template({"components": {"workerLlm": {"enabled": False}}}, api_versions=(KEDA_API,))
    names = {d["metadata"]["name"] for d in rendered.docs}
    assert not any(n.endswith("worker-llm") for n in names)
    assert rendered.has("ScaledObject", f"{RELEASE}-offload-worker-ocr")


def test_existing_secrets_are_used_and_none_is_generated(helm: Helm) -> None:
    rendered = helm.template({"auth": {"existingSecret": "keys", "existingSecretKey": "k",
                                       "webhookSecrets": {"existingSecret": "hooks"}},
                              "redis": {"auth": {"existingSecret": "redis-pw"}}})
    assert rendered.of_kind("Secret") == []
    volumes = {v["name"]: v for v in rendered.deployment("gateway")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "keys"
    assert volumes["api-keys"]["secret"]["items"] == [{"key": "k", "path": "api-keys"}]
    assert volumes["webhook-secrets"]["secret"]["secretName"] == "hooks"
    assert rendered.env("gateway")["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-pw"


def test_each_component_mounts_only_the_secrets_it_uses(helm: Helm) -> None:
    rendered = helm.template({})
    mounted = {c: {v["name"] for v in rendered.deployment(c)["spec"]["template"]["spec"]["volumes"]} - {"tmp"}
               for c in ("gateway", "status", "worker-ocr", "worker-llm")}
    assert mounted == {"gateway": {"api-keys", "webhook-secrets"}, "status": {"api-keys"},
                       "worker-ocr": {"webhook-secrets"}, "worker-llm": {"webhook-secrets"}}


def test_generated_api_key_is_a_strong_tenant_key_pair(renders: dict[str, Rendered]) -> None:
    import base64

    from offload_core.settings import KNOWN_DEFAULT_SECRETS, parse_pairs

    secret = renders["defaults"].get("Secret", f"{RELEASE}-offload-api-keys")
    [(tenant, key)] = parse_pairs(base64.b64decode(secret["data"]["api-keys"]).decode())
    assert tenant == "default" and len(key) >= 32 and key.lower() not in KNOWN_DEFAULT_SECRETS
    other = renders["keda"].get("Secret", f"{RELEASE}-offload-api-keys")
    assert other["data"] != secret["data"], "each install must get its own key"


def test_helm_test_pod_runs_the_smoke_script_with_the_gateway_image(renders: dict[str, Rendered]) -> None:
    rendered = renders["everything-on"]
    pod = rendered.get("Pod", f"{RELEASE}-offload-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"] == rendered.container("gateway")["image"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GATEWAY_URL"] == f"http://{RELEASE}-offload-gateway:8000"
    assert env["STATUS_URL"] == f"http://{RELEASE}-offload-status:8001"
    assert env["JOB_TYPE"] == "llm"
    script = rendered.get("ConfigMap", f"{RELEASE}-offload-test")["data"]["smoke_test.py"]
    assert "def main()" in script
    assert container["command"] == ["python", "/opt/offload-test/smoke_test.py"]


def _settings_env_names() -> set[str]:
    """Every OFFLOAD_* variable the code reads: Settings fields and the few read directly."""
    from offload_core.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    names = {f"{prefix}{field}".upper() for field in Settings.model_fields}
    for path in (REPO / "services").glob("*/src/**/*.py"):
        names |= set(re.findall(r"[\"'](OFFLOAD_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


def test_every_offload_variable_the_chart_sets_is_one_the_code_reads(renders: dict[str, Rendered]) -> None:
    known = _settings_env_names()
    for name, rendered in renders.items():
        config = rendered.get("ConfigMap", f"{RELEASE}-offload-config")["data"]
        set_by_chart = {k for k in config if k.startswith("OFFLOAD_")}
        for service in SERVICES:
            set_by_chart |= {k for k in rendered.env(service) if k.startswith("OFFLOAD_")}
        unknown = sorted(set_by_chart - known)
        assert not unknown, f"{name}: the chart sets variables no code reads: {unknown}"


def test_the_status_service_is_told_the_scaling_keda_uses(renders: dict[str, Rendered]) -> None:
    for name in ("keda", "scale-to-zero", "example:production.yaml"):
        rendered = renders[name]
        config = rendered.get("ConfigMap", f"{RELEASE}-offload-config")["data"]
        for service, job_type in WORKERS.items():
            spec = rendered.get("ScaledObject", f"{RELEASE}-offload-{service}")["spec"]
            prefix = f"OFFLOAD_{job_type.upper()}_SCALE_"
            told = {k.removeprefix(prefix): int(v) for k, v in config.items() if k.startswith(prefix)}
            assert told == {
                "LIST_LENGTH": int(spec["advanced"]["scalingModifiers"]["target"]),
                "ACTIVATION_LIST_LENGTH": int(spec["advanced"]["scalingModifiers"]["activationTarget"]),
                "MIN_REPLICAS": spec["minReplicaCount"],
                "MAX_REPLICAS": spec["maxReplicaCount"],
            }, f"{name}/{service}"
