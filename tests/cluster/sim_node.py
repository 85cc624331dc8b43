"""A simulated node for the cluster suite: what a kubelet reports, without running anything.

It registers a Ready Node, renews its Lease (so the node lifecycle controller keeps it Ready and
untainted), and reports every pod the scheduler binds to it as Running with its containers
ready; a pod being deleted is finished off, as a kubelet does once its containers stopped.
Containers never run: the suite checks what the API server, the controllers, the scheduler and
KEDA do with the chart, not the services (the other suites run those).

It authenticates as the node (`system:node:<name>`), so the Node authorizer and NodeRestriction
judge its writes as they would a kubelet's.

    python -m tests.cluster.sim_node --kubeconfig node.kubeconfig --name sim-node
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("sim-node")
LEASE_SECONDS = 40
RENEW_EVERY = 10


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SimNode:
    def __init__(self, api: client.ApiClient, name: str) -> None:
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.name = name
        self._ips = (str(ip) for ip in ipaddress.ip_network("10.244.0.0/16").hosts())
        self._pod_ips: dict[str, str] = {}

    # -- the node ----------------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        now = _now()
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        healthy = {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False", "Ready": "True"}
        return {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": t, "status": s, "lastHeartbeatTime": now, "lastTransitionTime": now,
                            "reason": "SimulatedNode", "message": "reported by tests/cluster/sim_node.py"}
                           for t, s in healthy.items()],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "nodeInfo": {"machineID": "sim", "systemUUID": "sim", "bootID": "sim", "kernelVersion": "sim",
                         "osImage": "simulated", "containerRuntimeVersion": "sim://1", "kubeletVersion": "v1.35.5",
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
        }

    def register(self) -> None:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name,
                                                            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.heartbeat()

    def heartbeat(self) -> None:
        # A patch of the status alone: NodeRestriction refuses a node's write that would undo a
        # taint the node lifecycle controller added meanwhile.
        self.core.patch_node_status(self.name, {"status": self._status()})
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                          "renewTime": _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
        try:
            current = self.coordination.read_namespaced_lease(self.name, "kube-node-lease")
            lease["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.coordination.replace_namespaced_lease(self.name, "kube-node-lease", lease)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", lease)

    def keep_alive(self, stop: threading.Event) -> None:
        while not stop.wait(RENEW_EVERY):
            try:
                self.heartbeat()
            except Exception:  # a slow API server: try again next period
                log.exception("heartbeat failed")

    # -- pods --------------------------------------------------------------------------------------

    def _running_status(self, pod: client.V1Pod) -> client.V1PodStatus:
        now = _now()
        key = pod.metadata.uid
        ip = self._pod_ips.setdefault(key, next(self._ips))
        conditions = [client.V1PodCondition(type=t, status="True", last_transition_time=now)
                      for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")]
        containers = [client.V1ContainerStatus(
            name=c.name, image=c.image, image_id=f"sim://{c.image}", container_id=f"sim://{key}/{c.name}",
            ready=True, started=True, restart_count=0,
            state=client.V1ContainerState(running=client.V1ContainerStateRunning(started_at=now)))
            for c in pod.spec.containers]
        return client.V1PodStatus(phase="Running", host_ip="127.0.0.1", host_ips=[client.V1HostIP(ip="127.0.0.1")],
                                  pod_ip=ip, pod_ips=[client.V1PodIP(ip=ip)], start_time=now,
                                  conditions=conditions, container_statuses=containers, qos_class=pod.status.qos_class)

    def handle(self, pod: client.V1Pod) -> None:
        ns, name = pod.metadata.namespace, pod.metadata.name
        if pod.metadata.deletion_timestamp:
            # The containers "stopped": the kubelet's last step is to delete the pod for good. The
            # grace period goes in the body: a body's DeleteOptions replace the query's, and
            # without one the pod's own grace period (a deletion already under way) stays.
            try:
                self.core.delete_namespaced_pod(name, ns, body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pod.metadata.uid)))
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
            self._pod_ips.pop(pod.metadata.uid, None)
            log.info("pod %s/%s stopped and deleted", ns, name)
            return
        if pod.status.phase == "Running" and all(s.ready for s in pod.status.container_statuses or []):
            return
        pod.status = self._running_status(pod)
        try:
            self.core.replace_namespaced_pod_status(name, ns, pod)
            log.info("pod %s/%s Running at %s", ns, name, pod.status.pod_ip)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or changed meanwhile: the watch brings it again
                raise

    def run(self, stop: threading.Event) -> None:
        selector = f"spec.nodeName={self.name}"
        while not stop.is_set():
            pods = self.core.list_pod_for_all_namespaces(field_selector=selector)
            for pod in pods.items:
                self.handle(pod)
            stream = watch.Watch()
            try:
                for event in stream.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                           resource_version=pods.metadata.resource_version, timeout_seconds=60):
                    if stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        try:
                            self.handle(event["object"])
                        except ApiException as exc:  # one pod's trouble must not stop the node
                            log.warning("pod %s/%s: %s %s", event["object"].metadata.namespace,
                                        event["object"].metadata.name, exc.status, exc.reason)
            except ApiException as exc:
                if exc.status != 410:  # an expired resourceVersion: list again
                    log.warning("watch failed: %s", exc.reason)
                    time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    node = SimNode(config.new_client_from_config(config_file=args.kubeconfig), args.name)
    node.register()
    log.info("node %s registered", args.name)
    stop = threading.Event()
    threading.Thread(target=node.keep_alive, args=(stop,), daemon=True).start()
    node.run(stop)


if __name__ == "__main__":
    main()
