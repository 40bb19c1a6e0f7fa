"""The node agent: test infrastructure playing the kubelet (and a userspace kube-proxy) for
the embedded control plane, the way kind's node image does for kind. It registers one Node,
runs the pods the scheduler binds to it as local processes of this project's binaries, and
reports their status.

What it does (and how it maps a container onto this machine):
- Node `pushcluster-node`: capacity, a Ready condition and a Lease in kube-node-lease,
  both renewed every 10 s.
- Images: the push-server image → our push-server binary, the push-operator image → our
  push-operator, any `redis` image → redis-server (with `--bind <pod IP>` added), or, when
  its command is the image's shell (`sh -c <script>`), /bin/sh running the script with this
  machine's redis-server, redis-cli, getent and timeout. Any other image: the container
  waits with reason ErrImageNeverPull and a message naming the image.
- Each pod gets its own loopback address 127.1.x.y (status.podIP/podIPs); a listen address
  `0.0.0.0:P` in the env or args becomes `<pod IP>:P`, so every pod listens on its real
  container ports.
- Env: value (with `$(VAR)` expansion, as the kubelet does), secretKeyRef, configMapKeyRef,
  fieldRef (metadata.name/namespace/uid, status.podIP, spec.nodeName,
  spec.serviceAccountName); args get `$(VAR)` expansion too.
- Volumes: secret, configMap and emptyDir volumes become directories under the pod's
  directory (an emptyDir starts empty for each new pod, even one of the same name); a
  persistentVolumeClaim is the directory of the PersistentVolume it is bound to (its
  `local.path` or `hostPath.path`; the container waits in ContainerCreating until the
  claim is Bound: the real controller-manager binds it, the scheduler too when its class
  waits for the first consumer). Every mountPath that appears in the env or args is
  replaced by that directory (the processes are not chrooted). Not supported: dynamic
  provisioning, projected volumes other than the service-account token, hostPath volumes
  in a pod, subPath, file modes.
- ServiceAccount: a TokenRequest token for the pod's ServiceAccount in a kubeconfig of the
  pod's own, exposed as KUBECONFIG (unless automountServiceAccountToken is false).
- Probes: httpGet, tcpSocket and exec readiness/liveness probes (an exec's args rewritten
  as the container's) against the process, with their period/timeout/failure thresholds;
  container statuses and the pod's Ready condition come from them; a liveness failure
  restarts the container.
- Restarts per restartPolicy with backoff (1 s doubling to 30 s; kubelet's is 10 s to 5 min),
  restartCount visible.
- Deletion: preStop (exec or httpGet), SIGTERM, up to terminationGracePeriodSeconds, SIGKILL,
  then the pod object is removed (grace period 0).
- Services: for every Service with a selector, a TCP proxy on its own loopback address
  127.100.x.y and the Service's ports, forwarding to the ready pods its selector picks
  (ClientIP affinity honoured). Not through EndpointSlices: the API server refuses loopback
  addresses in them. `<svc>.<ns>.svc[.cluster.local]` and the
  Service's ClusterIP in env and args are replaced by that address (there is no DNS); a
  pod's name under a headless Service (`<pod>.<svc>.<ns>.svc[.cluster.local]`) by the
  pod's address.
  services.json in the state directory lists them (`python3 -m harness.kube urls`).
- Logs: <state>/pods/<namespace>_<pod>/<container>.log (a preStop exec's output in
  <container>.prestop.log); every process it starts is in pids.json there, so
  `kube-down` stops them even after the agent crashed.

Run: python3 -m harness.node_agent --kubeconfig K --state DIR (make kube-up starts it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests
import yaml

from .procs import Processes

NODE = "pushcluster-node"
# A redis image's container command that runs a script in the image's shell.
REDIS_IMAGE_SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")
HEARTBEAT = 10.0
TICK = 0.3


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_atomically(path: Path, text: str) -> None:
    """Readers (tests, `kube down`) poll these files: never let one see a half-written one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class Api:
    """The API server through the admin kubeconfig (client certificate)."""

    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = cluster["server"]
        self.ca = cluster["certificate-authority"]
        self.cert = (user["client-certificate"], user["client-key"])
        self.session = requests.Session()

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        # Per request: a session's `verify` loses to REQUESTS_CA_BUNDLE in the environment.
        kw.setdefault("verify", self.ca)
        kw.setdefault("cert", self.cert)
        return self.session.request(method, self.server + path, **kw)

    def get(self, path: str, **kw) -> dict | None:
        r = self.request("GET", path, **kw)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def patch(self, path: str, body: dict, kind: str = "merge") -> requests.Response:
        ctype = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json"}[kind]
        return self.request("PATCH", path, data=json.dumps(body), headers={"Content-Type": ctype})


def stable_address(prefix: int, key: str) -> str:
    """127.<prefix>.x.y from a hash: the same pod name (a StatefulSet's) keeps its address."""
    digest = hashlib.sha256(key.encode()).digest()
    return f"127.{prefix}.{digest[0]}.{max(2, digest[1]) if digest[1] < 255 else 254}"


@dataclass
class Probe:
    spec: dict
    next_at: float = 0.0
    failures: int = 0
    successes: int = 0


@dataclass
class Container:
    spec: dict
    log: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: str | None = None
    last_exit: dict | None = None
    ready: bool = False
    backoff_until: float = 0.0
    backoff: float = 1.0
    waiting: tuple[str, str] | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    # The environment it was started with (exec probes and hooks run in it, as in a pod).
    env: dict[str, str] = field(default_factory=dict)
    # Its mountPaths and the directories standing in for them (an exec probe or hook sees
    # the container's paths: they are rewritten as its args are).
    mounts: dict[str, str] = field(default_factory=dict)


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    ip: str
    dir: Path
    pod: dict
    containers: dict[str, Container] = field(default_factory=dict)
    terminating: bool = False
    last_status: str = ""
    started: str = field(default_factory=now)


class ServiceProxy:
    """A userspace kube-proxy for one Service: a listener per port, ClientIP affinity."""

    def __init__(self, address: str, ports: list[dict], affinity: bool):
        self.address, self.affinity = address, affinity
        self.endpoints: dict[str, list[str]] = {}  # port name -> ["ip:port", ...]
        self.listeners: list[socket.socket] = []
        self.closed = False
        for port in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port["port"]))
            s.listen(256)
            self.listeners.append(s)
            threading.Thread(target=self._accept, args=(s, port.get("name", "")), daemon=True).start()

    def _pick(self, port_name: str, client: str) -> str | None:
        ready = self.endpoints.get(port_name) or []
        if not ready:
            return None
        if self.affinity:
            return ready[int(hashlib.sha256(client.encode()).hexdigest(), 16) % len(ready)]
        return ready[int(time.monotonic() * 1000) % len(ready)]

    def _accept(self, listener: socket.socket, port_name: str) -> None:
        while not self.closed:
            try:
                client, (peer, _) = listener.accept()
            except OSError:
                return
            target = self._pick(port_name, peer)
            if target is None:
                client.close()
                continue
            host, port = target.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        for s in self.listeners:
            s.close()


class NodeAgent:
    def __init__(self, kubeconfig: Path, state: Path, binaries: dict[str, str]):
        self.api = Api(kubeconfig)
        self.kubeconfig = kubeconfig
        self.state = state
        self.pods_dir = state / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.binaries = binaries
        self.runs: dict[str, PodRun] = {}
        self.services: dict[str, tuple[str, ServiceProxy, dict]] = {}  # ns/name -> (addr, proxy, svc)
        self.lock = threading.Lock()
        # Addresses are salted with this agent's state directory: two agents on one machine
        # (a developer's kube-up and a test run) never hand out the same pod address.
        self.salt = str(state.resolve())
        self.last_heartbeat = 0.0
        self.stopping = False

    # --- node ------------------------------------------------------------------------
    def register(self) -> None:
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux",
                                                   "kubernetes.io/arch": "amd64"}},
            "spec": {},
        }
        r = self.api.request("POST", "/api/v1/nodes", json=node)
        if r.status_code not in (201, 409):
            r.raise_for_status()
        self.heartbeat(force=True)

    def heartbeat(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last_heartbeat < HEARTBEAT:
            return
        self.last_heartbeat = time.monotonic()
        stamp = now()
        capacity = {"cpu": "2", "memory": "24Gi", "pods": "110", "ephemeral-storage": "50Gi"}
        conditions = [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "pushcluster node agent",
                       "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            conditions.append({"type": kind, "status": "False", "reason": f"KubeletHasNo{kind}",
                               "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
        self.api.patch(f"/api/v1/nodes/{NODE}/status", {"status": {
            "capacity": capacity, "allocatable": capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "nodeInfo": {"kubeletVersion": "v1.36.3", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "pushcluster-node-agent://1", "osImage": "local processes",
                         "kernelVersion": os.uname().release, "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                         "bootID": ""},
        }}, kind="strategic").raise_for_status()
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": NODE, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": now_micro()}}
        if self.api.patch(lease_path, {"spec": lease["spec"]}).status_code == 404:
            self.api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", json=lease)

    # --- services --------------------------------------------------------------------
    def endpoints(self, svc: dict) -> dict[str, list[str]]:
        """Port name -> ready `ip:port`s of the Service's pods. From our own pods, not
        EndpointSlices: the API server refuses loopback addresses in an EndpointSlice."""
        selector = svc["spec"]["selector"]
        out: dict[str, list[str]] = {}
        for run in list(self.runs.values()):
            labels = run.pod["metadata"].get("labels") or {}
            if run.namespace != svc["metadata"]["namespace"] or run.terminating \
                    or any(labels.get(k) != v for k, v in selector.items()) \
                    or not all(c.ready for c in run.containers.values()):
                continue
            ports = {p.get("name"): p["containerPort"] for c in run.pod["spec"]["containers"] for p in c.get("ports") or []}
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                number = ports.get(target) if isinstance(target, str) else target
                if number:
                    out.setdefault(port.get("name") or "", []).append(f"{run.ip}:{number}")
        return {k: sorted(v) for k, v in out.items()}

    def refresh_endpoints(self) -> None:
        with self.lock:
            for _, proxy, svc in list(self.services.values()):
                proxy.endpoints = self.endpoints(svc)

    def sync_services(self) -> None:
        services = self.api.get("/api/v1/services")["items"]
        # Under the lock: a terminating pod's thread refreshes endpoints meanwhile.
        with self.lock:
            self._sync_services(services)

    def _sync_services(self, services: list[dict]) -> None:
        seen = set()
        for svc in services:
            meta, spec = svc["metadata"], svc["spec"]
            if not spec.get("selector") or not spec.get("ports"):
                continue
            key = f"{meta['namespace']}/{meta['name']}"
            seen.add(key)
            if key not in self.services:
                address = stable_address(100, f"{self.salt}/{key}")
                try:
                    proxy = ServiceProxy(address, spec["ports"], spec.get("sessionAffinity") == "ClientIP")
                except OSError as e:
                    print(f"service {key}: cannot listen on {address}: {e}", flush=True)
                    continue
                self.services[key] = (address, proxy, svc)
                print(f"service {key} at {address} ports {[p['port'] for p in spec['ports']]}", flush=True)
            address, proxy, _ = self.services[key]
            self.services[key] = (address, proxy, svc)
        for key in list(self.services):
            if key not in seen:
                self.services.pop(key)[1].close()
        write_atomically(self.state / "services.json", json.dumps(
            {k: {"address": a, "ports": [p["port"] for p in s["spec"]["ports"]]} for k, (a, _, s) in self.services.items()},
            indent=1))

    def pod_address(self, namespace: str, pod: str) -> str:
        """The address of pod `namespace/pod` here: its own while it runs, else the one it
        will get (its key's first address)."""
        for run in self.runs.values():
            if (run.namespace, run.name) == (namespace, pod) and not run.terminating:
                return run.ip
        return stable_address(1, f"{self.salt}/{namespace}/{pod}")

    def rewrite(self, text: str, namespace: str, pod_ip: str, mounts: dict[str, str]) -> str:
        text = re.sub(r"\b0\.0\.0\.0(?=:\d)", pod_ip, text)
        # A pod's DNS name under a headless Service (`<pod>.<svc>.<ns>.svc[.cluster.local]`),
        # before the Service names (whose pattern would match its tail).
        headless = {key for key, (_, _, svc) in self.services.items() if svc["spec"].get("clusterIP") == "None"}
        text = re.sub(r"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\b",
                      lambda m: self.pod_address(m.group(4), m.group(1)) if f"{m.group(4)}/{m.group(3)}" in headless
                      else m.group(0), text)
        for key, (address, _, svc) in self.services.items():
            ns, name = key.split("/")
            text = re.sub(rf"\b{re.escape(name)}\.{re.escape(ns)}\.svc(\.cluster\.local)?\b", address, text)
            if ns == namespace:
                text = re.sub(rf"(?<=//){re.escape(name)}(?=[:/])", address, text)
            cluster_ip = svc["spec"].get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                text = text.replace(cluster_ip, address)
        for mount, path in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"(?<![\w/]){re.escape(mount)}(?=/|$|\s)", path, text)
        return text

    # --- pods --------------------------------------------------------------------------
    def run_forever(self) -> None:
        self.register()
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        while not self.stopping:
            try:
                self.heartbeat()
                # Services first: a pod started in this tick finds its Services' addresses
                # (no DNS: names are rewritten once, at container start); endpoints after
                # the pods, so they reflect this tick's readiness and deletions.
                self.sync_services()
                self.sync_pods()
                self.refresh_endpoints()
            except requests.RequestException as e:
                print(f"API error: {e}", flush=True)
            time.sleep(TICK)
        for run in list(self.runs.values()):
            self.stop_containers(run, grace=5)

    def sync_pods(self) -> None:
        pods = self.api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={NODE}"})["items"]
        listed = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            listed.add(uid)
            run = self.runs.get(uid)
            if run is None:
                if pod["metadata"].get("deletionTimestamp"):
                    self.api.request("DELETE", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}",
                                     json={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                    continue
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                run = self.start_pod(pod)
            run.pod = pod
            if pod["metadata"].get("deletionTimestamp") and not run.terminating:
                run.terminating = True
                threading.Thread(target=self.terminate, args=(run,), daemon=True).start()
            if not run.terminating:
                self.tend(run)
                self.report(run)
        for uid in list(self.runs):
            if uid not in listed:
                run = self.runs.pop(uid)
                if not run.terminating:
                    self.stop_containers(run, grace=2)
        self.write_pids()

    def free_address(self, key: str) -> str:
        """The pod's stable address, unless a pod running here holds it (the hash has 16
        bits: two pod names of one run collided once, and the second pod could not listen):
        then the next address of the same key's sequence that is free."""
        taken = {run.ip for run in self.runs.values()}
        address, n = stable_address(1, f"{self.salt}/{key}"), 0
        while address in taken:
            n += 1
            address = stable_address(1, f"{self.salt}/{key}#{n}")
        return address

    def start_pod(self, pod: dict) -> PodRun:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        pod_dir = self.pods_dir / f"{meta['namespace']}_{meta['name']}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        # A new pod of a reused name (a StatefulSet's) starts with empty emptyDirs; the
        # logs of the one before stay.
        shutil.rmtree(pod_dir / "volumes", ignore_errors=True)
        run = PodRun(meta["uid"], meta["namespace"], meta["name"], self.free_address(key), pod_dir, pod)
        for spec in pod["spec"]["containers"]:
            run.containers[spec["name"]] = Container(spec=spec, log=pod_dir / f"{spec['name']}.log",
                                                     readiness=Probe(spec["readinessProbe"]) if spec.get("readinessProbe") else None,
                                                     liveness=Probe(spec["livenessProbe"]) if spec.get("livenessProbe") else None)
        self.runs[meta["uid"]] = run
        print(f"pod {key} at {run.ip}, logs in {pod_dir}", flush=True)
        return run

    def volumes(self, run: PodRun) -> dict[str, str]:
        """name -> directory, materialised."""
        out = {}
        for volume in run.pod["spec"].get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                out[volume["name"]] = self.claimed_directory(run.namespace, volume["persistentVolumeClaim"]["claimName"])
                continue
            path = run.dir / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            items: dict[str, bytes] = {}
            if "secret" in volume:
                secret = self.api.get(f"/api/v1/namespaces/{run.namespace}/secrets/{volume['secret']['secretName']}") or {}
                items = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            elif "configMap" in volume:
                cm = self.api.get(f"/api/v1/namespaces/{run.namespace}/configmaps/{volume['configMap']['name']}") or {}
                items = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
            for item in (volume.get("secret") or volume.get("configMap") or {}).get("items") or []:
                if item["key"] in items:
                    items[item["path"]] = items.pop(item["key"])
            for name, data in items.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(data)
            out[volume["name"]] = str(path)
        return out

    def claimed_directory(self, namespace: str, claim: str) -> str:
        """The directory of the PersistentVolume `claim` is bound to."""
        pvc = self.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        if not pvc:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found')
        volume = pvc["spec"].get("volumeName")
        if pvc.get("status", {}).get("phase") != "Bound" or not volume:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = self.api.get(f"/api/v1/persistentvolumes/{volume}") or {}
        source = pv.get("spec", {}).get("local") or pv.get("spec", {}).get("hostPath")
        if not source:
            raise VolumeNotReady(f'persistentvolume "{volume}" is neither local nor hostPath: this node cannot mount it')
        path = Path(source["path"])
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def service_account_kubeconfig(self, run: PodRun) -> Path | None:
        spec = run.pod["spec"]
        if spec.get("automountServiceAccountToken") is False:
            return None
        sa = spec.get("serviceAccountName") or "default"
        r = self.api.request("POST", f"/api/v1/namespaces/{run.namespace}/serviceaccounts/{sa}/token",
                             json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": 86400,
                                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                               "name": run.name, "uid": run.uid}}})
        r.raise_for_status()
        path = run.dir / "serviceaccount.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "c", "cluster": {"server": self.api.server, "certificate-authority": self.api.ca}}],
            "users": [{"name": sa, "user": {"token": r.json()["status"]["token"]}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa, "namespace": run.namespace}}],
        }))
        path.chmod(0o600)
        return path

    def env(self, run: PodRun, spec: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in spec.get("envFrom") or []:
            if "secretRef" in source:
                data = (self.api.get(f"/api/v1/namespaces/{run.namespace}/secrets/{source['secretRef']['name']}") or {}).get("data") or {}
                env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
            elif "configMapRef" in source:
                env.update((self.api.get(f"/api/v1/namespaces/{run.namespace}/configmaps/{source['configMapRef']['name']}") or {}).get("data") or {})
        fields = {"metadata.name": run.name, "metadata.namespace": run.namespace, "metadata.uid": run.uid,
                  "status.podIP": run.ip, "spec.nodeName": NODE,
                  "spec.serviceAccountName": run.pod["spec"].get("serviceAccountName", "default")}
        for var in spec.get("env") or []:
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
            elif "valueFrom" in var:
                source = var["valueFrom"]
                kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef" if "configMapKeyRef" in source else None
                if kind:
                    value = self.key_ref(run, kind, source[kind])
                    if value is not None:
                        env[var["name"]] = value
                elif "fieldRef" in source:
                    env[var["name"]] = fields.get(source["fieldRef"]["fieldPath"], "")
        return env

    def key_ref(self, run: PodRun, kind: str, ref: dict) -> str | None:
        """A secretKeyRef / configMapKeyRef value; None when optional and absent."""
        resource = "secrets" if kind == "secretKeyRef" else "configmaps"
        obj = self.api.get(f"/api/v1/namespaces/{run.namespace}/{resource}/{ref['name']}") or {}
        value = (obj.get("data") or {}).get(ref["key"])
        if value is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"{resource[:-1]} {ref['name']} key {ref['key']} not found")
        return base64.b64decode(value).decode() if resource == "secrets" else value

    def command(self, spec: dict) -> list[str]:
        image = spec.get("image", "")
        # registry[:port]/path/name[:tag][@digest] -> name
        base = image.split("@", 1)[0].split("/")[-1].split(":", 1)[0]
        binary = self.binaries.get(base)
        redis_image = base == "redis" or base.startswith("redis")
        if redis_image:
            binary = self.binaries.get("redis")
        if not binary:
            raise ImageError(f"image {image} is not one this node can run (push-server, push-operator, redis)")
        command = spec.get("command") or []
        if redis_image and command and command[0] in REDIS_IMAGE_SHELLS:
            # The image's shell running a start script (its redis-server, redis-cli, getent
            # and timeout are this machine's).
            return ["/bin/sh", *command[1:], *(spec.get("args") or [])]
        args = [*command[1:], *(spec.get("args") or [])] if command else list(spec.get("args") or [])
        return [binary, *args]

    def start_container(self, run: PodRun, name: str) -> None:
        c = run.containers[name]
        try:
            cmd = self.command(c.spec)
            env = self.env(run, c.spec)
            volumes = self.volumes(run)
        except ImageError as e:
            c.waiting = ("ErrImageNeverPull", str(e))
            return
        except ContainerConfigError as e:
            c.waiting = ("CreateContainerConfigError", str(e))
            return
        except VolumeNotReady as e:
            c.waiting = ("ContainerCreating", str(e))
            return
        mounts = {m["mountPath"]: volumes[m["name"]] for m in c.spec.get("volumeMounts") or [] if m["name"] in volumes}
        kubeconfig = self.service_account_kubeconfig(run)
        if kubeconfig:
            env["KUBECONFIG"] = str(kubeconfig)
        env = {k: self.rewrite(v, run.namespace, run.ip, mounts) for k, v in env.items()}
        cmd = [cmd[0], *(self.rewrite(expand(a, env), run.namespace, run.ip, mounts) for a in cmd[1:])]
        if Path(cmd[0]).name == "redis-server" and "--bind" not in cmd:
            cmd += ["--bind", run.ip]
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "RUST_BACKTRACE")}
        base_env["TMPDIR"] = str(run.dir)
        c.env, c.mounts = {**base_env, **env}, mounts
        with open(c.log, "a") as log:
            c.proc = subprocess.Popen(cmd, env=c.env, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True, cwd=run.dir)
        c.started_at, c.waiting, c.ready = now(), None, False
        for probe in (c.readiness, c.liveness):
            if probe:
                probe.next_at = time.monotonic() + probe.spec.get("initialDelaySeconds", 0)
                probe.failures = probe.successes = 0
        self.write_pids()

    def tend(self, run: PodRun) -> None:
        policy = run.pod["spec"].get("restartPolicy", "Always")
        for name, c in run.containers.items():
            if c.proc is None:
                if c.waiting and c.waiting[0] == "ErrImageNeverPull":
                    continue
                if time.monotonic() >= c.backoff_until:
                    self.start_container(run, name)
                continue
            code = c.proc.poll()
            if code is not None:
                # As a runtime tears down the container's PID namespace with its first
                # process: nothing it started (a start script's loop) outlives it.
                Processes.signal(c.proc, signal.SIGKILL)
                c.last_exit = {"exitCode": code, "finishedAt": now(), "startedAt": c.started_at,
                               "reason": "Completed" if code == 0 else "Error"}
                c.proc, c.ready = None, False
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    c.restarts += 1
                    c.backoff_until = time.monotonic() + c.backoff
                    c.backoff = min(c.backoff * 2, 30)
                    c.waiting = ("CrashLoopBackOff", f"back-off {c.backoff:.0f}s restarting failed container")
                continue
            if time.monotonic() - _started_monotonic(c) > 60:
                c.backoff = 1.0
            for probe, is_liveness in ((c.readiness, False), (c.liveness, True)):
                if probe and time.monotonic() >= probe.next_at:
                    probe.next_at = time.monotonic() + probe.spec.get("periodSeconds", 10)
                    ok = self.probe(run, c, probe.spec)
                    if ok:
                        probe.successes, probe.failures = probe.successes + 1, 0
                    else:
                        probe.failures, probe.successes = probe.failures + 1, 0
                    threshold = probe.spec.get("failureThreshold", 3)
                    if is_liveness and probe.failures >= threshold:
                        Processes.signal(c.proc, signal.SIGKILL)
                    elif not is_liveness:
                        if ok and probe.successes >= probe.spec.get("successThreshold", 1):
                            c.ready = True
                        elif probe.failures >= threshold:
                            c.ready = False
            if c.readiness is None:
                c.ready = True

    def probe(self, run: PodRun, c: Container, spec: dict, output: Path | None = None) -> bool:
        """Runs a probe or hook; an exec's output is appended to `output` when given (a
        kubelet keeps a hook's output nowhere: here it is kept for a post-mortem)."""
        timeout = spec.get("timeoutSeconds", 1)

        def port(value) -> int:
            if isinstance(value, int):
                return value
            return next(p["containerPort"] for p in c.spec.get("ports", []) if p.get("name") == value)

        try:
            if "httpGet" in spec:
                h = spec["httpGet"]
                r = requests.get(f"http://{run.ip}:{port(h['port'])}{h.get('path', '/')}", timeout=timeout)
                return 200 <= r.status_code < 400
            if "tcpSocket" in spec:
                with socket.create_connection((run.ip, port(spec["tcpSocket"]["port"])), timeout=timeout):
                    return True
            if "exec" in spec:
                command = spec["exec"]["command"]
                if command and command[0] in REDIS_IMAGE_SHELLS:
                    command = ["/bin/sh", *command[1:]]
                command = [command[0], *(self.rewrite(a, run.namespace, run.ip, c.mounts) for a in command[1:])]
                if output is None:
                    return subprocess.run(command, timeout=timeout, capture_output=True, cwd=run.dir,
                                          env=c.env or None).returncode == 0
                with output.open("a") as log:
                    return subprocess.run(command, timeout=timeout, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=run.dir, env=c.env or None).returncode == 0
        except (requests.RequestException, OSError, subprocess.SubprocessError, StopIteration):
            return False
        return True

    def report(self, run: PodRun) -> None:
        statuses = []
        for name, c in run.containers.items():
            state: dict = {}
            if c.proc is not None:
                state = {"running": {"startedAt": c.started_at}}
            elif c.waiting:
                state = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
            elif c.last_exit:
                state = {"terminated": c.last_exit}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            status = {"name": name, "image": c.spec.get("image", ""), "imageID": "", "ready": c.ready,
                      "started": c.proc is not None, "restartCount": c.restarts, "state": state,
                      "containerID": f"pushcluster://{c.proc.pid}" if c.proc else ""}
            if c.last_exit:
                status["lastState"] = {"terminated": c.last_exit}
            statuses.append(status)
        all_ready = all(c.ready for c in run.containers.values())
        phase = "Running" if any(c.proc for c in run.containers.values()) or all_ready else "Pending"
        stamp = run.started
        conditions = [{"type": t, "status": s, "lastTransitionTime": stamp} for t, s in (
            ("PodScheduled", "True"), ("Initialized", "True"),
            ("ContainersReady", str(all_ready)), ("Ready", str(all_ready)))]
        body = {"status": {"phase": phase, "podIP": run.ip, "podIPs": [{"ip": run.ip}], "hostIP": "127.0.0.1",
                           "hostIPs": [{"ip": "127.0.0.1"}], "startTime": run.started,
                           "conditions": conditions, "containerStatuses": statuses}}
        fingerprint = json.dumps(body, sort_keys=True)
        if fingerprint == run.last_status:
            return
        r = self.api.patch(f"/api/v1/namespaces/{run.namespace}/pods/{run.name}/status", body, kind="strategic")
        if r.ok:
            run.last_status = fingerprint

    def terminate(self, run: PodRun) -> None:
        """Runs on its own thread: whatever fails, the pod object is still finalised."""
        try:
            self._terminate(run)
        except Exception as e:  # noqa: BLE001 (logged; the pod must not hang in Terminating)
            print(f"pod {run.namespace}/{run.name}: termination failed: {e!r}", flush=True)
            self.stop_containers(run, grace=0)
        self.api.request("DELETE", f"/api/v1/namespaces/{run.namespace}/pods/{run.name}",
                         json={"gracePeriodSeconds": 0, "preconditions": {"uid": run.uid}})

    def _terminate(self, run: PodRun) -> None:
        # Out of every Service first, as the endpoints controller takes a terminating pod
        # out at once: no new connection reaches a process that is about to stop.
        self.refresh_endpoints()
        grace = run.pod["spec"].get("terminationGracePeriodSeconds", 30)
        deletion_grace = run.pod["metadata"].get("deletionGracePeriodSeconds")
        if deletion_grace is not None:
            grace = deletion_grace
        deadline = time.monotonic() + grace
        for c in run.containers.values():
            pre_stop = (c.spec.get("lifecycle") or {}).get("preStop")
            if pre_stop and c.proc:
                self.probe(run, c, {**pre_stop, "timeoutSeconds": max(1, grace)},
                           output=run.dir / f"{c.spec['name']}.prestop.log")
        self.stop_containers(run, grace=max(0.0, deadline - time.monotonic()))
        statuses = []
        for name, c in run.containers.items():
            statuses.append(f"{name}={c.last_exit['exitCode'] if c.last_exit else '?'}")
        print(f"pod {run.namespace}/{run.name} terminated ({', '.join(statuses)})", flush=True)
        with (run.dir / "terminated.json").open("w") as f:
            json.dump({n: c.last_exit for n, c in run.containers.items()}, f)

    def stop_containers(self, run: PodRun, grace: float) -> None:
        # A container may have exited on its own already (a drain that finished during the
        # preStop hook, a signal): its exit is recorded too, not left unknown.
        running = [c for c in run.containers.values() if c.proc]
        live = [c for c in running if c.proc.poll() is None]
        for c in live:
            Processes.signal(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in running:
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
            Processes.signal(c.proc, signal.SIGKILL)  # what the first process left behind
            c.last_exit = {"exitCode": c.proc.returncode, "finishedAt": now(), "startedAt": c.started_at,
                           "reason": "Completed" if c.proc.returncode == 0 else "Error",
                           "signal": -c.proc.returncode if c.proc.returncode < 0 else 0}
            c.proc = None

    def write_pids(self) -> None:
        pids = [c.proc.pid for run in self.runs.values() for c in run.containers.values() if c.proc]
        write_atomically(self.pods_dir / "pids.json", json.dumps(pids))


class ImageError(Exception):
    pass


class ContainerConfigError(Exception):
    pass


class VolumeNotReady(Exception):
    pass


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion; `$$(VAR)` stays literal."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def _started_monotonic(c: Container) -> float:
    # Seconds since the container started, from its RFC 3339 timestamp.
    if not c.started_at:
        return 0.0
    started = datetime.strptime(c.started_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return time.monotonic() - (datetime.now(timezone.utc) - started).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m harness.node_agent")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--push-server", required=True)
    parser.add_argument("--push-operator", required=True)
    parser.add_argument("--redis-server", default="redis-server")
    args = parser.parse_args()
    agent = NodeAgent(args.kubeconfig, args.state, {
        "push-server": args.push_server, "push-operator": args.push_operator, "redis": args.redis_server})
    agent.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
