"""A real node for the test control plane (#27, docs/design/real-node.md): kubelet and
kube-proxy v1.36.3, containerd with runc and the CNI bridge, built by e2e/node/build.

Layout (the network rule: loopback or namespaces the run creates, nothing else):
- One network namespace created here holds the node: its address 10.99.0.2 on its `lo`,
  the pods' bridge `cni0` (10.88.0.0/24, created by the CNI plugin inside it), and every
  daemon: containerd, the kubelet, kube-proxy (iptables rules in that namespace only).
  CoreDNS serves cluster.local there (the `kube-dns` Service, 10.96.0.10) and answers
  every other name NXDOMAIN. The daemons share one mount namespace of their own (host
  mounts propagate in, theirs do not propagate out), in which three host sysctls the
  kubelet insists on writing are covered by files of the state directory: the host's
  are left as they were.
- The control plane stays on the host's 127.0.0.1, and the two sides meet through unix
  sockets: the kubelet, kube-proxy and the pods reach the API server through a relay
  listening on the node's port 6443 (`kubernetes` Service → 10.99.0.2:6443), the API
  server reaches the kubelet, pods and Services through an HTTP CONNECT proxy inside the
  node (harness/egress_proxy.py, the API server's `cluster` egress selector).
- Tests on the host reach pods and Services as a node's host does: one veth pair into
  the node's namespace (host end 10.99.255.1 plus client source addresses) and two host
  routes through it, 10.88.0.0/24 and 10.96.0.0/16. That is all the run adds to the
  host's namespace; deleting the node's namespace deletes both.
- Identity: the kubelet, kube-proxy and CoreDNS have client certificates of their own
  (system:node:pushcluster-node in system:nodes, system:kube-proxy, system:coredns with
  kubeadm's read-only ClusterRole), the API server runs
  the Node authorizer and NodeRestriction, and the kubelet serves with webhook
  authentication and authorization: the API server calls it with its own client cert.
- Pod cgroups sit under /<netns name>/ in every hierarchy; `down` kills what is in them,
  every process of the node's namespace, removes the cgroups, the namespace, and the
  files upstream daemons write outside the state directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from .core import REPO, find_binary, log_tail
from .images import Built, ImageBuilder, repository_images

NODE = "pushcluster-node"
NODE_IP = "10.99.0.2"
POD_SUBNET = "10.88.0.0/24"
CLUSTER_DNS = "10.96.0.10"
SERVICE_CIDR = "10.96.0.0/16"
# The host's way to pods and Services, as a node's host has one: a veth pair into the
# node's namespace. The host end's first address, then addresses tests bind clients to
# (distinct sources for ClientIP affinity).
HOST_LINK_NET = "10.99.255"
HOST_LINK_HOST, HOST_LINK_NODE = f"{HOST_LINK_NET}.1", f"{HOST_LINK_NET}.2"
CLIENT_SOURCES = tuple(f"{HOST_LINK_NET}.{n}" for n in range(10, 30))
NODE_API_PORT = 6443
KUBELET_PORT = 10250
# The host sysctls the kubelet writes at start (no option skips it), with the values it
# wants: inside the node's mount namespace these paths are covered by plain files.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
COREDNS_USER = "system:coredns"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
# Paths upstream daemons write whatever their configuration says: containerd's shim
# sockets (/run/containerd/s), the kubelet's device-plugin directory and container log
# links, `ip netns`'s directory. Those that did not exist before `up` are removed by `down`.
FIXED_PATHS = (Path("/run/containerd"), Path("/var/lib/kubelet"), CONTAINER_LOG_LINKS, Path("/run/netns"))


class NodeError(RuntimeError):
    pass


def _mount_points() -> set[str]:
    """This namespace's mount points (os.path.ismount misses a bind mount of a directory
    on itself)."""
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def bin_dir() -> Path:
    out = subprocess.run([str(REPO / "e2e" / "node" / "build"), "--print"], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


def missing_tools() -> list[str]:
    """What the real node needs that this machine lacks (binaries built by e2e/node/build,
    Debian packages installed by .ci/setup)."""
    built = bin_dir()
    missing = [f"{b} (e2e/node/build)" for b in ("kubelet", "kube-proxy", "containerd", "ctr",
                                                  "containerd-shim-runc-v2", "bridge", "host-local",
                                                  "loopback", "portmap", "coredns") if not (built / b).is_file()]
    missing += [tool for tool in ("runc", "socat", "conntrack", "iptables", "umoci", "ip") if shutil.which(tool) is None]
    return missing


class RealNode:
    def __init__(self, state: Path, pki: Path):
        self.state = Path(state)
        self.pki = pki  # the control plane's: ca.crt, ca.key
        tag = hashlib.sha1(str(self.state.resolve()).encode()).hexdigest()[:8]
        self.netns = f"pcnode-{tag}"
        self.bin = bin_dir()

    # --- what the control plane needs before it starts -----------------------
    @property
    def egress_socket(self) -> Path:
        return self.state / "egress.sock"

    @property
    def api_socket(self) -> Path:
        return self.state / "api.sock"

    def make_pki(self, openssl) -> None:
        """Certificates of the node's identities, signed by the control plane's CA; called
        by ControlPlane._make_pki (cwd: the pki directory)."""
        (self.pki / "kubelet-serving.ext").write_text(
            f"subjectAltName=DNS:{NODE},IP:{NODE_IP}\nextendedKeyUsage=serverAuth\n")
        for name, subject, ext in (
                ("kubelet", f"/O=system:nodes/CN=system:node:{NODE}", "client.ext"),
                ("kubelet-serving", f"/CN={NODE}", "kubelet-serving.ext"),
                ("kube-proxy", "/CN=system:kube-proxy", "client.ext"),
                ("coredns", f"/CN={COREDNS_USER}", "client.ext"),
                ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "client.ext")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                    "-subj", subject)
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", f"{name}.crt", "-days", "30", "-extfile", ext)

    def apiserver_flags(self) -> list[str]:
        self.state.mkdir(parents=True, exist_ok=True)
        egress = self.state / "egress-selector.yaml"
        egress.write_text(json.dumps({
            "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(self.egress_socket)}}}}],
        }))
        pki = self.pki
        return [
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--egress-selector-config-file={egress}",
        ]

    # --- up ------------------------------------------------------------------
    def _kubeconfig(self, name: str, user: str) -> Path:
        path = self.state / f"{name}.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "node", "cluster": {
                "server": f"https://127.0.0.1:{NODE_API_PORT}", "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(self.pki / f"{user}.crt"), "client-key": str(self.pki / f"{user}.key")}}],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": user}}],
        }))
        return path

    def _write_configs(self) -> Path:
        s = self.state
        for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "sysctl/vm", "sysctl/kernel", "logs"):
            (s / d).mkdir(parents=True, exist_ok=True)
        for name, value in KUBELET_SYSCTLS.items():
            (s / "sysctl" / name).write_text(Path(f"/proc/sys/{name}").read_text())
        (s / "resolv.conf").write_text("")  # pods resolve through the cluster DNS only
        (s / "containerd" / "config.toml").write_text(f"""version = 3
root = "{s}/containerd/root"
state = "{s}/containerd/state"
imports = []
[grpc]
  address = "{s}/containerd/containerd.sock"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "registry.k8s.io/pause:3.10.1"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    # The session has no CAP_SYS_RESOURCE: a pod's oom_score_adj may only be raised.
    restrict_oom_score_adj = true
    # Pod network namespaces under the state directory, not /run/netns.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{shutil.which('runc')}"
          Root = "{s}/runc"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["{self.bin}"]
      conf_dir = "{s}/cni/net.d"
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
  [plugins.'io.containerd.internal.v1.opt']
    path = "{s}/containerd/opt"
""")
        (s / "cni" / "net.d" / "10-pushcluster.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": self.netns, "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": f"{s}/cni/ipam", "ranges": [[{"subnet": POD_SUBNET}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]}, indent=1))
        (s / "kubelet-config.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "address": NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "tlsCertFile": str(self.pki / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(self.pki / "kubelet-serving.key"),
            "containerRuntimeEndpoint": f"unix://{s}/containerd/containerd.sock",
            # Hybrid cgroups here (v1 controllers); pod cgroups under /<netns>/.
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "cgroupRoot": f"/{self.netns}",
            "cgroupsPerQOS": True, "enforceNodeAllocatable": ["pods"],
            "clusterDNS": [CLUSTER_DNS], "clusterDomain": "cluster.local", "resolvConf": str(s / "resolv.conf"),
            "podLogsDir": str(s / "pod-logs"), "failSwapOn": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "registerNode": True, "rotateCertificates": False, "serializeImagePulls": False,
            "protectKernelDefaults": False, "maxPods": 110,
        }, indent=1))
        (s / "kube-proxy-config.yaml").write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self._kubeconfig("kube-proxy", "kube-proxy"))},
            "mode": "iptables", "clusterCIDR": POD_SUBNET, "hostnameOverride": NODE,
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            # Leave the host-wide conntrack table size and timeouts alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # Replies of a pod reached through a Service on the same bridge come back routed
            # (no br_netfilter here).
            "iptables": {"masqueradeAll": True},
        }, indent=1))
        self._kubeconfig("kubelet", "kubelet")
        (s / "Corefile").write_text(f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:8181
    health 127.0.0.1:8080
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self._kubeconfig("coredns", "coredns")} node
        ttl 5
    }}
    cache 5
}}
# Every other name: NXDOMAIN (nothing leaves the node's namespace).
.:53 {{
    bind {NODE_IP}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
""")
        script = s / "node.sh"
        mounts = "\n".join(f'mount --bind "{s}/sysctl/{name}" /proc/sys/{name}' for name in KUBELET_SYSCTLS)
        script.write_text(f"""#!/bin/sh
# The node's daemons, in the node's network namespace and one private mount namespace.
set -eu
export PATH="{self.bin}:$PATH"
{mounts}
ip link set lo up
ip addr add {NODE_IP}/32 dev lo
echo 1 > /proc/sys/net/ipv4/ip_forward
L="{s}/logs"
socat TCP-LISTEN:{NODE_API_PORT},bind=0.0.0.0,fork,reuseaddr UNIX-CONNECT:"{self.api_socket}" 2>>"$L/relay.log" &
cd "{REPO / 'e2e'}" && python3 -m harness.egress_proxy "{self.egress_socket}" 2>>"$L/egress-proxy.log" &
containerd --config "{s}/containerd/config.toml" >>"$L/containerd.log" 2>&1 &
while [ ! -S "{s}/containerd/containerd.sock" ]; do sleep 0.1; done
kubelet --config "{s}/kubelet-config.yaml" --kubeconfig "{s}/kubelet.kubeconfig" --node-ip={NODE_IP} \\
  --hostname-override={NODE} --root-dir="{s}/kubelet" --cert-dir="{s}/kubelet/pki" --v=1 >>"$L/kubelet.log" 2>&1 &
kube-proxy --config "{s}/kube-proxy-config.yaml" --v=1 >>"$L/kube-proxy.log" 2>&1 &
coredns -conf "{s}/Corefile" >>"$L/coredns.log" 2>&1 &
wait
""")
        return script

    def build_images(self) -> dict[str, Built]:
        """The pod sandbox, Redis, push-server and push-operator images (harness/images.py),
        the last two tagged with the chart's appVersion, so that the chart's defaults run
        them."""
        binaries = {name: find_binary(name) for name in ("push-server", "push-operator")}
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise NodeError(f"the images hold {', '.join(missing)}: build it first "
                            "(cargo build -p push-server -p push-operator)")
        chart = yaml.safe_load((REPO / "charts" / "pushcluster-operator" / "Chart.yaml").read_text())
        builder = ImageBuilder(self.state / "images")
        images = {"pause": builder.pause(), "redis": builder.redis()}
        images["push-server"], images["push-operator"] = repository_images(builder, binaries, chart["appVersion"])
        return images

    def _cluster_objects(self) -> list[tuple[str, dict]]:
        """What the node's services need in the API: the `kubernetes` Service's endpoint
        (this API server writes none: --endpoint-reconciler-type=none) at the node's relay,
        the `kube-dns` Service at CoreDNS on the node's address, and CoreDNS's read access
        (kubeadm's ClusterRole for it)."""
        def endpoint_slice(namespace: str, service: str, ports: list[dict]) -> tuple[str, dict]:
            return (f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": service, "namespace": namespace, "labels": {
                    "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "pushcluster-e2e"}},
                "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                "ports": ports})

        dns_ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        return [
            endpoint_slice("default", "kubernetes", [{"name": "https", "port": NODE_API_PORT, "protocol": "TCP"}]),
            ("/api/v1/namespaces/kube-system/services", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                "spec": {"clusterIP": CLUSTER_DNS, "ports": [
                    {"name": p["name"], "port": 53, "targetPort": 53, "protocol": p["protocol"]} for p in dns_ports]}}),
            endpoint_slice("kube-system", "kube-dns", dns_ports),
            (f"{rbac}/clusterroles", {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": COREDNS_USER},
                "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                           "verbs": ["list", "watch"]},
                          {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]}),
            (f"{rbac}/clusterrolebindings", {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": COREDNS_USER},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": COREDNS_USER},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": COREDNS_USER}]}),
        ]

    def up(self, api_port: int, spawn, admin_get, admin_post, deadline: float) -> dict[str, Built]:
        """Builds the images, starts the node (the control plane is up; `spawn(name, argv)`
        records a process for `down`), imports the images and waits until the Node is
        Ready. Returns the images by role."""
        images = self.build_images()
        for path, obj in self._cluster_objects():
            admin_post(path, obj)
        if subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split().count(self.netns):
            raise NodeError(f"network namespace {self.netns} exists: a node of {self.state} is still up")
        script = self._write_configs()
        (self.state / "created-paths.json").write_text(json.dumps([str(p) for p in FIXED_PATHS if not p.exists()]))
        self._make_cgroup_root()
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        self._link_host()
        spawn("node-api-relay", ["socat", f"UNIX-LISTEN:{self.api_socket},fork,mode=600",
                                 f"TCP:127.0.0.1:{api_port}"])
        # Not `ip netns exec`: it mounts a new /sys, hiding the cgroup hierarchies.
        node = spawn("node", ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount",
                              "--propagation", "slave", "sh", str(script)])
        imported = False
        while True:
            if node.poll() is not None:
                raise NodeError(f"the node's daemons exited ({node.returncode}):\n{self.log_tails()}")
            if not imported and (self.state / "containerd" / "containerd.sock").is_socket():
                for built in images.values():
                    self.import_image(built.archive)
                imported = True
            r = admin_get(f"/api/v1/nodes/{NODE}")
            if imported and r.status_code == 200 and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in r.json().get("status", {}).get("conditions", [])):
                return images
            if time.monotonic() > deadline:
                raise NodeError(f"Node {NODE} not Ready in time:\n{self.log_tails()}")
            time.sleep(0.5)

    def import_image(self, archive: Path) -> None:
        """An OCI archive into the node's containerd, where the kubelet's CRI finds it."""
        done = subprocess.run([str(self.bin / "ctr"), "--address", str(self.state / "containerd" / "containerd.sock"),
                               "-n", "k8s.io", "images", "import", str(archive)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise NodeError(f"ctr images import {archive}: {done.stderr.strip()}")

    @property
    def host_link(self) -> str:
        return self.netns.replace("pcnode-", "pcn-")  # an interface name has 15 bytes at most

    def _link_host(self) -> None:
        """The veth pair: host end with HOST_LINK_HOST and CLIENT_SOURCES, node end
        HOST_LINK_NODE, host routes to the pod subnet and the Service range through it.
        Deleting the namespace deletes the pair and, with it, the routes."""
        link, ns = self.host_link, self.netns
        commands = [["ip", "link", "add", link, "type", "veth", "peer", "name", "host0", "netns", ns],
                    ["ip", "addr", "add", f"{HOST_LINK_HOST}/24", "dev", link],
                    *(["ip", "addr", "add", f"{a}/24", "dev", link] for a in CLIENT_SOURCES),
                    ["ip", "link", "set", link, "up"],
                    ["ip", "-n", ns, "addr", "add", f"{HOST_LINK_NODE}/24", "dev", "host0"],
                    ["ip", "-n", ns, "link", "set", "host0", "up"],
                    ["ip", "route", "add", POD_SUBNET, "via", HOST_LINK_NODE, "dev", link],
                    ["ip", "route", "add", SERVICE_CIDR, "via", HOST_LINK_NODE, "dev", link]]
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise NodeError(f"{' '.join(command)}: {done.stderr.strip()}")

    def _make_cgroup_root(self) -> None:
        """The kubelet's cgroupRoot, in every hierarchy (it must exist); cpuset's with the
        parent's CPUs and memory nodes, which a v1 cpuset does not inherit."""
        for hierarchy in CGROUP_ROOT.iterdir():
            if not (hierarchy / "cgroup.procs").is_file():
                continue
            top = hierarchy / self.netns
            top.mkdir(exist_ok=True)
            for inherited in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / inherited).is_file():
                    (top / inherited).write_text((hierarchy / inherited).read_text())

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{log_tail(p, 15)}" for p in sorted((self.state / "logs").glob("*.log")))

    # --- down ----------------------------------------------------------------
    def _cgroup_dirs(self) -> list[Path]:
        """The node's pod cgroups in every hierarchy, deepest first."""
        dirs = []
        for hierarchy in CGROUP_ROOT.iterdir():
            top = hierarchy / self.netns
            if top.is_dir():
                dirs += sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]
        return dirs

    def _processes(self) -> set[int]:
        pids = set()
        for d in self._cgroup_dirs():
            try:
                pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        listed = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        pids |= {int(p) for p in listed.stdout.split()}
        return pids - {os.getpid()}

    def down(self) -> list[str]:
        """Kills the containers and every process of the node's namespace, then removes
        the cgroups, the namespace and what upstream daemons wrote outside the state."""
        killed: set[int] = set()
        for _ in range(50):
            pids = self._processes()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed |= pids
            time.sleep(0.1)
        for d in self._cgroup_dirs():
            try:
                d.rmdir()
            except OSError:
                pass
        subprocess.run(["ip", "link", "delete", self.host_link], capture_output=True)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        if CONTAINER_LOG_LINKS.is_dir():
            for link in CONTAINER_LOG_LINKS.iterdir():
                if link.is_symlink() and os.readlink(link).startswith(str(self.state)):
                    link.unlink()
        try:
            created = json.loads((self.state / "created-paths.json").read_text())
        except (OSError, ValueError):
            created = []
        for path in created:
            for _ in range(5):  # `ip netns` bind-mounts /run/netns on itself
                if path not in _mount_points():
                    break
                subprocess.run(["umount", path], capture_output=True)
            shutil.rmtree(path, ignore_errors=True)
        left = [str(d) for d in self._cgroup_dirs()]
        if left:
            raise NodeError(f"cgroups left after the node's teardown: {left}")
        return [f"{len(killed)} node processes"] if killed else []
