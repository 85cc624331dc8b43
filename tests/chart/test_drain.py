"""What holds when pods go away (rollouts, KEDA scale-in, node drains, cluster-autoscaler): grace
periods that evictions honour, scratch volumes that do not pin a node, API pods that keep
serving while endpoints forget them."""

from __future__ import annotations

from tests.chart.chartkit import SERVICES, Helm, Rendered

CA_LIMIT = 600  # cluster-autoscaler's default --max-graceful-termination-sec


def _pod(rendered: Rendered, service: str) -> dict:
    return rendered.deployment(service)["spec"]["template"]


def test_worker_grace_periods_fit_cluster_autoscalers_default_limit(renders: dict[str, Rendered]) -> None:
    for name in ("defaults", "keda", "example:kind.yaml"):
        for service in ("worker-ocr", "worker-llm"):
            grace = _pod(renders[name], service)["spec"]["terminationGracePeriodSeconds"]
            assert grace <= CA_LIMIT, f"{name}/{service}: {grace} s; cluster-autoscaler would cut a job off"


def test_a_grace_period_above_the_eviction_limit_is_refused_with_what_to_change(helm: Helm) -> None:
    error = helm.template_error({"config": {"ocr": {"softTimeLimitSeconds": 700, "hardTimeLimitSeconds": 900}}})
    assert ("components.workerOcr: its grace period (960 s) exceeds drain.maxGracePeriodSeconds (600 s)" in error
            and "lower config.ocr.hardTimeLimitSeconds" in error), error
    # A cluster whose autoscaler allows longer says so.
    rendered = helm.template({"config": {"ocr": {"softTimeLimitSeconds": 700, "hardTimeLimitSeconds": 900}},
                              "drain": {"maxGracePeriodSeconds": 1200}})
    assert _pod(rendered, "worker-ocr")["spec"]["terminationGracePeriodSeconds"] == 960


def test_every_scratch_volume_is_declared_safe_to_evict(renders: dict[str, Rendered]) -> None:
    for name, rendered in renders.items():
        for service in SERVICES:
            pod = _pod(rendered, service)
            scratch = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
            declared = pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"]
            assert set(declared.split(",")) == scratch, f"{name}/{service}"


def test_the_bundled_redis_is_not_evicted_by_cluster_autoscaler_unless_allowed(helm: Helm,
                                                                               renders: dict[str, Rendered]) -> None:
    def annotation(rendered: Rendered) -> str:
        sts = rendered.of_kind("StatefulSet")[0]
        return sts["spec"]["template"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"]

    assert annotation(renders["defaults"]) == "false"
    assert annotation(helm.template({"redis": {"safeToEvict": True}})) == "true"


def test_api_pods_keep_serving_through_the_pre_stop_sleep_then_drain_within_the_grace_period(
        renders: dict[str, Rendered]) -> None:
    for name in ("defaults", "everything-on", "example:production.yaml"):
        rendered = renders[name]
        for service in ("gateway", "status"):
            pod = _pod(rendered, service)["spec"]
            container = pod["containers"][0]
            sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            graceful = int(rendered.env(service)["OFFLOAD_GRACEFUL_SHUTDOWN_SECONDS"]["value"])
            assert sleep >= 3, f"{name}/{service}: endpoints need a moment to drop the pod"
            assert sleep + graceful < pod["terminationGracePeriodSeconds"], f"{name}/{service}"
        for service in ("worker-ocr", "worker-llm"):
            assert "lifecycle" not in _pod(rendered, service)["spec"]["containers"][0], "workers drain on SIGTERM"


def test_a_grace_period_shorter_than_the_drain_is_refused(helm: Helm) -> None:
    error = helm.template_error({"components": {"gateway": {"preStopSleepSeconds": 10, "gracefulShutdownSeconds": 25}}})
    assert ("components.gateway.terminationGracePeriodSeconds (30) must exceed preStopSleepSeconds + "
            "gracefulShutdownSeconds (10 + 25)") in error, error
