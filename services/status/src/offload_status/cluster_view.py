"""The status service's view of its workers in Kubernetes: the replicas of the worker
Deployments and the state of their KEDA ScaledObjects, read with the official `kubernetes`
client through a read-only Role confined to the release's namespace.

`cluster_view_for(settings)` decides once, at start-up, whether this process can read the
cluster: it runs in a pod (KUBERNETES_SERVICE_HOST is set) and has a service-account token
mounted. `ClusterView.snapshot()` is what GET /v1/queues shows under `cluster`. It never raises:
when the cluster cannot be read (not in a cluster, RBAC refuses, the API does not answer) it
says `{"available": false, "reason": ...}`, with whatever it did read.

The client blocks, so reads run in a worker thread with a short timeout, and a snapshot is kept
for a few seconds: a dashboard polling every few seconds costs the API server one list of each
kind per period, and a slow API server makes no request wait once a first snapshot exists.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from offload_core.settings import Settings

from .kube_state import scale_target, worker_selector, worker_state

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]

NOT_IN_CLUSTER = "not running in a Kubernetes cluster"
KEDA_GROUP, KEDA_VERSION, SCALED_OBJECTS = "keda.sh", "v1alpha1", "scaledobjects"


class NotInCluster(Exception):
    """This process cannot read the cluster at all; the message says why, for people."""


class Unreadable(Exception):
    """One list call failed (refused, or no answer); the message says which and why."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _api_message(body: Any) -> str:
    """The `message` of a Kubernetes Status object, or the raw body, shortened."""
    try:
        return str(json.loads(body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(body or "")[:300]


class ClusterReader:
    """Reads one namespace's worker Deployments and ScaledObjects (blocking calls)."""

    def __init__(self, api_client: ApiClient, namespace: str, release: str = "", *,
                 timeout_seconds: float = 2.0) -> None:
        self.api_client, self.namespace, self.release = api_client, namespace, release
        self.timeout = (timeout_seconds, timeout_seconds)  # (connect, read)

    @classmethod
    def from_service_account(cls, settings: Settings, environ: Mapping[str, str] = os.environ,
                             **kwargs: Any) -> ClusterReader:
        """The reader a pod uses: the API server the kubelet names in the environment, the
        mounted token (re-read as it rotates) and CA. Raises NotInCluster with the reason."""
        if not environ.get("KUBERNETES_SERVICE_HOST"):
            raise NotInCluster(NOT_IN_CLUSTER)
        account_dir = Path(settings.k8s_service_account_dir)
        if not (account_dir / "token").is_file():
            raise NotInCluster(
                f"running in a Kubernetes cluster, but no service-account token is mounted at {account_dir}, "
                "so the workers cannot be read (the chart mounts one when components.status.rbac.create is true)")
        namespace = settings.k8s_namespace or _read_text(account_dir / "namespace")
        if not namespace:
            raise NotInCluster("no namespace to read the workers in: set OFFLOAD_K8S_NAMESPACE")

        # Imported here: the client takes half a second to import, and only pods need it.
        from kubernetes.client import ApiClient, Configuration
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader

        configuration = Configuration()
        try:
            InClusterConfigLoader(token_filename=str(account_dir / "token"), cert_filename=str(account_dir / "ca.crt"),
                                  environ=environ).load_and_set(configuration)
        except ConfigException as exc:
            raise NotInCluster(f"the service-account files in {account_dir} are unusable: {exc}") from None
        # One retry covers a pooled connection the API server closed; the next refresh retries the rest.
        configuration.retries = 1
        return cls(ApiClient(configuration), namespace, settings.k8s_release, **kwargs)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as exc:
            reason = f"cannot list {what} in namespace {self.namespace}: {exc.status} {exc.reason}"
            message = _api_message(exc.body)
            if message:
                reason += f" ({message})"
            if exc.status == 403:
                reason += ("; the status service's Role must allow list on deployments.apps and "
                           "scaledobjects.keda.sh in its namespace (the chart's components.status.rbac.create)")
            raise Unreadable(reason) from None
        except HTTPError as exc:
            cause = getattr(exc, "reason", None) or exc
            raise Unreadable(f"the Kubernetes API at {self.api_client.configuration.host} did not answer "
                             f"when listing {what}: {cause}") from None

    def deployments(self) -> list[dict[str, Any]]:
        from kubernetes.client import AppsV1Api

        found = self._call("deployments", lambda: AppsV1Api(self.api_client).list_namespaced_deployment(
            self.namespace, label_selector=worker_selector(self.release), _request_timeout=self.timeout))
        # The typed objects back to the API's camelCase JSON, which kube_state reads.
        return [self.api_client.sanitize_for_serialization(d) for d in found.items]

    def scaled_objects(self) -> list[dict[str, Any]] | None:
        """The ScaledObjects, or None when the cluster does not serve KEDA's API."""
        from kubernetes.client import CustomObjectsApi
        from kubernetes.client.exceptions import ApiException

        def list_them() -> Any:
            try:
                return CustomObjectsApi(self.api_client).list_namespaced_custom_object(
                    KEDA_GROUP, KEDA_VERSION, self.namespace, SCALED_OBJECTS,
                    label_selector=worker_selector(self.release), _request_timeout=self.timeout)
            except ApiException as exc:
                if exc.status == 404:  # KEDA is not installed: the workers have a plain replica count
                    return None
                raise

        found = self._call("scaledobjects.keda.sh", list_them)
        return None if found is None else list(found.get("items") or [])

    def read(self) -> Snapshot:
        snapshot: Snapshot = {"available": True, "namespace": self.namespace, "release": self.release or None,
                              "read_at": _now(), "keda": None, "workers": []}
        try:
            deployments = self.deployments()
        except Unreadable as exc:
            return {**snapshot, "available": False, "reason": str(exc)}
        scaled_objects: list[dict[str, Any]] = []
        try:
            found = self.scaled_objects()
            snapshot["keda"] = found is not None
            scaled_objects = found or []
        except Unreadable as exc:
            snapshot.update(available=False, reason=str(exc))
        by_target = {scale_target(so): so for so in scaled_objects}
        workers = [worker_state(d, by_target.get(d["metadata"]["name"])) for d in deployments]
        snapshot["workers"] = sorted(workers, key=lambda w: (w["job_type"] or "", w["deployment"] or ""))
        return snapshot


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class ClusterView:
    """The latest snapshot, refreshed off the event loop at most every `cache_seconds`."""

    def __init__(self, read: Callable[[], Snapshot], *, cache_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._cache_seconds, self._clock = read, cache_seconds, clock
        self._snapshot: Snapshot | None = None
        self._taken_at = 0.0
        self._refreshing = False
        self._lock = anyio.Lock()
        self._last_reason: str | None = None

    @classmethod
    def unavailable(cls, reason: str) -> ClusterView:
        """A view that always says why there is nothing to see (outside a cluster)."""
        fixed = {"available": False, "reason": reason}
        view = cls(lambda: fixed, cache_seconds=float("inf"))
        view._snapshot = fixed
        return view

    def _fresh(self) -> bool:
        return self._snapshot is not None and self._clock() - self._taken_at < self._cache_seconds

    async def snapshot(self) -> Snapshot:
        if self._fresh() or (self._refreshing and self._snapshot is not None):
            return self._snapshot  # a refresh is under way: the last snapshot serves meanwhile
        async with self._lock:
            if not self._fresh():
                self._refreshing = True
                try:
                    self._snapshot = await anyio.to_thread.run_sync(self._read_safely)
                    self._taken_at = self._clock()
                finally:
                    self._refreshing = False
        return self._snapshot

    def _read_safely(self) -> Snapshot:
        try:
            snapshot = self._read()
        except Exception as exc:  # a bug or a surprise from the client must not break /v1/queues
            log.exception("reading the cluster failed")
            snapshot = {"available": False, "reason": f"reading the cluster failed: {type(exc).__name__}: {exc}"}
        reason = snapshot.get("reason")
        if reason != self._last_reason and reason:
            log.warning("cluster view unavailable: %s", reason)  # once per new reason, not per request
        self._last_reason = reason
        return snapshot


def cluster_view_for(settings: Settings, environ: Mapping[str, str] = os.environ) -> ClusterView:
    try:
        reader = ClusterReader.from_service_account(settings, environ)
    except NotInCluster as exc:
        return ClusterView.unavailable(str(exc))
    log.info("cluster view: workers of release %r in namespace %s", reader.release or "*", reader.namespace)
    return ClusterView(reader.read)
