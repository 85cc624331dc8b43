"""The dashboard's cluster panel in headless Chromium: what a real status process read from the
Kubernetes API, and the plain reason when it could not read it."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.support.browser import sign_in
from tests.status.conftest import NAMESPACE, RELEASE
from tests.status.kube_api import FakeKubeApi, deployment, scaled_object
from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import Service


def test_the_overview_shows_each_workers_replicas_and_scaledobject(
        page: Page, kube_api: FakeKubeApi, pod_env: dict[str, str], start_status: Callable[..., Service],  # noqa: F811
        platform_factory: PlatformFactory) -> None:
    kube_api.deployments = [
        deployment(RELEASE, "worker-ocr", replicas=3, current=3, updated=3, ready=2, available=2),
        deployment(RELEASE, "worker-llm", replicas=1, current=1, updated=1, ready=1, available=1),
    ]
    kube_api.scaled_objects = [scaled_object(RELEASE, "worker-ocr", ready="True", active="True", max_replicas=8)]
    platform = Platform(keys=platform_factory.keys, status=start_status(pod_env))
    sign_in(page, platform, "alice")

    ocr = page.locator("#cluster-table tbody tr[data-job-type='ocr']")
    expect(ocr.locator("td.desired")).to_have_text("3")
    expect(ocr.locator("td.ready")).to_have_text("2")
    expect(ocr.locator("td.rollout")).to_have_text("2 of 3 updated replicas available")
    expect(ocr.locator("td.scaledobject")).to_have_text(
        f"{RELEASE}-offload-worker-ocr: ready yes, active yes, 0–8 replicas")
    llm = page.locator("#cluster-table tbody tr[data-job-type='llm']")
    expect(llm.locator("td.rollout")).to_have_text("rolled out")
    expect(llm.locator("td.scaledobject")).to_have_text("none: a fixed replica count")
    expect(page.locator("#cluster-note")).to_contain_text(f"namespace {NAMESPACE}, release {RELEASE}")


def test_the_overview_says_plainly_why_it_cannot_see_the_cluster(
        page: Page, start_status: Callable[..., Service], platform_factory: PlatformFactory) -> None:  # noqa: F811
    platform = Platform(keys=platform_factory.keys, status=start_status({"KUBERNETES_SERVICE_HOST": ""}))
    sign_in(page, platform, "alice")
    expect(page.locator("#cluster-note")).to_have_text("Cluster view unavailable: not running in a Kubernetes cluster")
    expect(page.locator("#cluster-table")).to_be_hidden()
    expect(page.locator("#workers-table tbody tr")).to_have_count(2)  # the rest of the overview is there
