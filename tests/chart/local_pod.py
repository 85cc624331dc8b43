"""Turn a rendered pod's container into what the kubelet would hand the process: its argv, its
environment (envFrom, then env in order, with `$(VAR)` expansion, Secrets, ConfigMaps and the
downward API resolved) and the files its volumes mount. The chart-wiring and image tests run
services from this, so they run exactly what the chart says.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chart.chartkit import Rendered

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, others kept, `$$` escapes."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, value)


@dataclass
class LocalContainer:
    name: str
    argv: list[str]
    env: dict[str, str]
    # mountPath -> {file name: content}; an emptyDir is an empty dict.
    mounts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    readiness_path: str = "/readyz"
    readiness_port: int = 0
    working_dir: str | None = None

    def materialize(self, root: Path) -> dict[str, str]:
        """Write the mounted files under `root` and return the environment with every mount path
        it names pointing there instead (the one change running outside a container needs)."""
        self.write_mounts(root)
        return {k: self.local_path(v, root) for k, v in self.env.items()}

    def write_mounts(self, root: Path) -> dict[str, Path]:
        """Write each mount's files under `root`; return mount path -> local directory."""
        out = {}
        for mount_path, files in self.mounts.items():
            local = root / mount_path.lstrip("/")
            local.mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                (local / name).write_bytes(content)
            out[mount_path] = local
        return out

    def local_path(self, value: str, root: Path) -> str:
        """`value` with a leading mount path (the longest that matches) moved under `root`."""
        for mount_path in sorted(self.mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(root / mount_path.lstrip("/")) + value[len(mount_path):]
        return value


class PodResolver:
    """Resolves containers of the rendered objects; `secrets` adds Secrets the user would bring."""

    def __init__(self, rendered: Rendered, secrets: dict[str, dict[str, str]] | None = None,
                 namespace: str = "offload") -> None:
        self.namespace = namespace
        self.config_maps = {d["metadata"]["name"]: {k: v.encode() for k, v in d.get("data", {}).items()}
                            for d in rendered.of_kind("ConfigMap")}
        self.secrets = {d["metadata"]["name"]: {k: base64.b64decode(v) for k, v in d.get("data", {}).items()}
                        for d in rendered.of_kind("Secret")}
        for name, data in (secrets or {}).items():
            self.secrets[name] = {k: v.encode() for k, v in data.items()}

    def _source(self, ref: dict[str, Any], kind: str) -> dict[str, bytes]:
        store = self.secrets if kind == "secret" else self.config_maps
        name = ref["name"]
        if name not in store:
            raise KeyError(f"the pod refers to {kind} {name!r}, which neither the chart nor the test provides")
        return store[name]

    def resolve(self, pod_name: str, pod_spec: dict[str, Any], container: dict[str, Any],
                claims: tuple[str, ...] = ()) -> LocalContainer:
        """`claims` names volumes that come from a StatefulSet's volumeClaimTemplates (empty here)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._source(source["configMapRef"], "configMap")
            else:
                data = self._source(source["secretRef"], "secret")
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = expand(item["value"], env)
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                env[item["name"]] = self._source(source["secretKeyRef"], "secret")[source["secretKeyRef"]["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[item["name"]] = self._source(ref, "configMap")[ref["key"]].decode()
            elif "fieldRef" in source:
                field_path = source["fieldRef"]["fieldPath"]
                env[item["name"]] = {"metadata.name": pod_name, "metadata.namespace": self.namespace}[field_path]
            else:
                raise ValueError(f"unsupported env source {source}")

        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mounts: dict[str, dict[str, bytes]] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"]) or ({"emptyDir": {}} if mount["name"] in claims else None)
            if volume is None:
                raise KeyError(f"{container['name']} mounts {mount['name']!r}, which the pod does not define")
            if "secret" in volume:
                data, items = self._source({"name": volume["secret"]["secretName"]}, "secret"), volume["secret"].get("items")
            elif "configMap" in volume:
                data, items = self._source(volume["configMap"], "configMap"), volume["configMap"].get("items")
            elif "emptyDir" in volume:
                mounts[mount["mountPath"]] = {}
                continue
            else:
                raise ValueError(f"unsupported volume {volume}")
            mounts[mount["mountPath"]] = ({i["path"]: data[i["key"]] for i in items} if items else dict(data))

        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        readiness = container.get("readinessProbe", {}).get("httpGet", {})
        port = readiness.get("port", 0)
        return LocalContainer(
            name=container["name"],
            argv=[*container.get("command", []), *container.get("args", [])],
            env=env,
            mounts=mounts,
            ports=ports,
            readiness_path=readiness.get("path", "/readyz"),
            readiness_port=ports.get(port, port) if isinstance(port, str) else port,
            working_dir=container.get("workingDir"),
        )

    def deployment(self, rendered: Rendered, name: str) -> LocalContainer:
        deployment = rendered.get("Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        return self.resolve(f"{name}-7d9f8c6b5-x2x4q", pod, pod["containers"][0])

    def pod(self, rendered: Rendered, name: str) -> LocalContainer:
        pod = rendered.get("Pod", name)
        return self.resolve(name, pod["spec"], pod["spec"]["containers"][0])
