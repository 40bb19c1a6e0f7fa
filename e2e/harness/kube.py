"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, ServiceAccount
issuer and keys, generated PKI), kube-controller-manager and kube-scheduler, built from Go
modules by e2e/kube/build. One state directory holds the PKI, etcd's data, the kubeconfigs,
one log file per process and `pids.json`; `down` stops exactly the processes `up` started.

Used two ways, the same code:
  python3 -m harness.kube up|down|status [--state DIR]   (make kube-up / make kube-down)
  ControlPlane(state).up() / .down()                      (the pytest session fixture)

`up` prints `export KUBECONFIG=<admin kubeconfig>` as its last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from .core import REPO, find_binary, log_tail
from .ports import reserve_port
from .images import ImageBuildError
from .real_node import NODE, NodeError, RealNode

DEFAULT_STATE = Path(os.environ.get("PUSHCLUSTER_KUBE_STATE", "/tmp/pushcluster-kube"))
SERVICE_CIDR = "10.96.0.0/16"
FIRST_SERVICE_IP = "10.96.0.1"
# The order they start in; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


class ControlPlaneError(RuntimeError):
    pass


def bin_dir() -> Path:
    """Where e2e/kube/build puts (or has put) the binaries; building is .ci/setup's job."""
    out = subprocess.run([str(REPO / "e2e" / "kube" / "build"), "--print"], capture_output=True,
                         text=True, check=True)
    return Path(out.stdout.strip())


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): a PID the
    kernel reused for another process does not match it. None once it has exited (a
    zombie our own process has not reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _alive(entry: dict) -> bool:
    return _start_time(entry["pid"]) == entry["start"]


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def reserve(cls) -> Ports:
        return cls(*(reserve_port() for _ in range(5)))


class ControlPlane:
    def __init__(self, state: Path = DEFAULT_STATE, binaries: Path | None = None):
        self.state = Path(state)
        self._bin = binaries

    # --- paths ---------------------------------------------------------------
    @property
    def bin(self) -> Path:
        if self._bin is None:
            self._bin = bin_dir()
        return self._bin

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids_file(self) -> Path:
        return self.state / "pids.json"

    def running(self) -> list[dict]:
        """The processes a previous `up` started that are still alive."""
        try:
            entries = json.loads(self.pids_file.read_text())
        except (OSError, ValueError):
            return []
        return [e for e in entries if _alive(e)]

    # --- up ------------------------------------------------------------------
    def up(self, timeout: float = 180, say=print, node: str | None = None) -> Path:
        """Starts everything and waits until it serves; returns the admin kubeconfig.
        With `node`, pods really run: "agent" starts the node agent (harness/node_agent.py,
        pods as local processes), "real" a real kubelet, containerd and kube-proxy
        (harness/real_node.py)."""
        if self.running():
            raise ControlPlaneError(
                f"a control plane from {self.state} is already running (pids "
                f"{[e['pid'] for e in self.running()]}): `make kube-down` first, or use it")
        missing = [c for c in (*COMPONENTS, "kubectl") if not (self.bin / c).is_file()]
        if missing:
            raise ControlPlaneError(f"{', '.join(missing)} not built in {self.bin}: run e2e/kube/build")
        if self.state.exists():
            shutil.rmtree(self.state)
        for d in (self.pki, self.logs):
            d.mkdir(parents=True)
        started = time.monotonic()
        self.ports = Ports.reserve()
        self._entries: list[dict] = []
        self.real_node = RealNode(self.state / "node", self.pki) if node == "real" else None
        try:
            self._make_pki()
            self._write_kubeconfig()
            self._start_etcd(deadline=time.monotonic() + timeout)
            say(f"etcd ready on 127.0.0.1:{self.ports.etcd_client}")
            self._start_apiserver(deadline=time.monotonic() + timeout)
            say(f"kube-apiserver ready on https://127.0.0.1:{self.ports.apiserver}")
            self._start_controllers(deadline=time.monotonic() + timeout)
            say("kube-controller-manager and kube-scheduler ready")
            if node == "agent":
                self._start_node_agent(deadline=time.monotonic() + timeout)
                say(f"node agent ready: pods run as local processes, logs under {self.state / 'node' / 'pods'}")
            elif node == "real":
                self._start_real_node(deadline=time.monotonic() + timeout)
                say(f"node {NODE} Ready (kubelet, containerd, kube-proxy, CoreDNS in network namespace "
                    f"{self.real_node.netns}); logs under {self.state / 'node' / 'logs'}")
        except BaseException:
            self.down(keep_state=True)
            raise
        say(f"control plane up in {time.monotonic() - started:.1f} s; logs in {self.logs}")
        return self.kubeconfig

    def _spawn(self, name: str, args: list[str], program: str | None = None) -> subprocess.Popen:
        """Starts `program` (default: the control plane's binary `name`), recorded for `down`."""
        log = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen([program or str(self.bin / name), *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.state)
        proc.log_path = self.logs / f"{name}.log"  # type: ignore[attr-defined]
        self._entries.append({"name": name, "pid": proc.pid, "start": _start_time(proc.pid)})
        self.pids_file.write_text(json.dumps(self._entries, indent=1))
        return proc

    def _wait(self, proc: subprocess.Popen, what: str, probe, deadline: float) -> None:
        last = None
        while True:
            if proc.poll() is not None:
                raise ControlPlaneError(f"{what}: exited with code {proc.returncode}; last lines of "
                                        f"{proc.log_path}:\n{log_tail(proc.log_path)}")
            try:
                if probe():
                    return
            except (requests.RequestException, OSError, subprocess.SubprocessError) as e:
                last = e
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{what}: not ready in time (last error: {last!r}); last lines "
                                        f"of {proc.log_path}:\n{log_tail(proc.log_path)}")
            time.sleep(0.2)

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.pki, check=True, capture_output=True, timeout=60)

    def _make_pki(self) -> None:
        """A CA, the API server's serving cert, an admin client cert (system:masters) and
        the ServiceAccount signing key pair, all with openssl."""
        o = self._openssl
        o("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
          "-days", "30", "-subj", "/CN=pushcluster-e2e-ca")
        sans = ("subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                f"DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:{FIRST_SERVICE_IP}")
        (self.pki / "serving.ext").write_text(f"{sans}\nextendedKeyUsage=serverAuth\n")
        (self.pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        for name, subject, ext in (("apiserver", "/CN=kube-apiserver", "serving.ext"),
                                   ("admin", "/O=system:masters/CN=pushcluster-e2e-admin", "client.ext")):
            o("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
              "-subj", subject)
            o("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
              "-out", f"{name}.crt", "-days", "30", "-extfile", ext)
        if self.real_node is not None:
            self.real_node.make_pki(o)
        o("genrsa", "-out", "sa.key", "2048")
        o("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "pushcluster-e2e",
            "clusters": [{"name": "pushcluster-e2e", "cluster": {
                "server": self.server, "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(self.pki / "admin.crt"), "client-key": str(self.pki / "admin.key")}}],
            "contexts": [{"name": "pushcluster-e2e", "context": {"cluster": "pushcluster-e2e", "user": "admin"}}],
        }, indent=1))
        self.kubeconfig.chmod(0o600)

    def _admin_get(self, url: str) -> requests.Response:
        return self._admin("GET", url)

    def _admin(self, method: str, url: str, **kwargs) -> requests.Response:
        """A request to the API server as the admin (system:masters)."""
        return requests.request(method, url, cert=(self.pki / "admin.crt", self.pki / "admin.key"),
                                verify=self.pki / "ca.crt", timeout=5, **kwargs)

    def _start_etcd(self, deadline: float) -> None:
        p = self.ports
        client, peer = f"http://127.0.0.1:{p.etcd_client}", f"http://127.0.0.1:{p.etcd_peer}"
        proc = self._spawn("etcd", [
            "--name=e2e", f"--data-dir={self.state / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._wait(proc, "etcd", lambda: requests.get(f"{client}/health", timeout=2).json().get("health") == "true",
                   deadline)

    def _start_apiserver(self, deadline: float) -> None:
        pki = self.pki
        proc = self._spawn("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports.apiserver}",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--cert-dir={self.state / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            *(self.real_node.apiserver_flags() if self.real_node else ["--authorization-mode=RBAC"]),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--v=1",
        ])
        self._wait(proc, "kube-apiserver /readyz",
                   lambda: self._admin_get(f"{self.server}/readyz").text == "ok", deadline)

    def _start_controllers(self, deadline: float) -> None:
        pki, kc = self.pki, str(self.kubeconfig)
        common = [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                  "--bind-address=127.0.0.1", "--leader-elect=false"]
        kcm = self._spawn("kube-controller-manager", [
            *common, f"--secure-port={self.ports.controller_manager}",
            f"--cert-dir={self.state / 'controller-manager'}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true", f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Scale-subresource reads and scale-ins should not wait minutes in tests.
            "--horizontal-pod-autoscaler-sync-period=5s",
            "--v=1",
        ])
        scheduler = self._spawn("kube-scheduler", [
            *common, f"--secure-port={self.ports.scheduler}", "--v=1",
        ])

        # Both serve /healthz with a certificate they sign themselves at start; nothing
        # secret crosses it, so it is not verified.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

        def healthy(port: int) -> bool:
            return requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2).text == "ok"

        self._wait(kcm, "kube-controller-manager /healthz", lambda: healthy(self.ports.controller_manager), deadline)
        self._wait(scheduler, "kube-scheduler /healthz", lambda: healthy(self.ports.scheduler), deadline)
        # Healthy is not working: the ServiceAccount controller creating `default` in
        # the `default` namespace shows its controllers really run against the server.
        self._wait(kcm, "kube-controller-manager to create ServiceAccount default/default",
                   lambda: self._admin_get(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default")
                   .status_code == 200, deadline)

    def _start_node_agent(self, deadline: float) -> None:
        binaries = {name: find_binary(name) for name in ("push-server", "push-operator")}
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise ControlPlaneError(f"the node agent runs {', '.join(missing)}: build it first "
                                    "(cargo build -p push-server -p push-operator)")
        log = open(self.logs / "node-agent.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.node_agent", "--kubeconfig", str(self.kubeconfig),
             "--state", str(self.state / "node"), "--push-server", str(binaries["push-server"]),
             "--push-operator", str(binaries["push-operator"])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=REPO / "e2e")
        proc.log_path = self.logs / "node-agent.log"  # type: ignore[attr-defined]
        self._entries.append({"name": "node-agent", "pid": proc.pid, "start": _start_time(proc.pid)})
        self.pids_file.write_text(json.dumps(self._entries, indent=1))

        def node_ready() -> bool:
            r = self._admin_get(f"{self.server}/api/v1/nodes/{NODE}")
            if r.status_code != 200:
                return False
            node = r.json()
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))

        self._wait(proc, "the node agent's Node to be Ready", node_ready, deadline)

    def _start_real_node(self, deadline: float) -> None:
        def admin_post(path: str, obj: dict) -> None:
            r = self._admin("POST", f"{self.server}{path}", json=obj)
            if r.status_code != 201:
                raise ControlPlaneError(f"POST {path}: {r.status_code} {r.text}")

        try:
            self.images = self.real_node.up(
                self.ports.apiserver,
                spawn=lambda name, argv: self._spawn(name, argv[1:], program=argv[0]),
                admin_get=lambda path: self._admin_get(f"{self.server}{path}"), admin_post=admin_post,
                deadline=deadline)
        except (NodeError, ImageBuildError) as e:
            raise ControlPlaneError(str(e)) from e

    def _stop_pods(self) -> list[str]:
        """The pods' processes, by the node agent's record: also after the agent crashed."""
        try:
            pids = json.loads((self.state / "node" / "pods" / "pids.json").read_text())
        except (OSError, ValueError):
            return []
        stopped = []
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
                stopped.append(f"pod process ({pid})")
            except ProcessLookupError:
                pass
        # SIGKILL is delivered asynchronously: wait until each is gone (or a zombie for
        # init to reap), so "stopped" means stopped.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.05)
        return stopped

    # --- down ----------------------------------------------------------------
    def down(self, keep_state: bool = False, grace: float = 10) -> list[str]:
        """SIGTERM to every process `up` started (newest first), SIGKILL after `grace`
        seconds; removes the state directory. Returns what it stopped."""
        try:
            entries = json.loads(self.pids_file.read_text())
        except (OSError, ValueError):
            entries = []
        stopped = []
        for entry in reversed(entries):
            if not _alive(entry):
                continue
            try:
                os.killpg(entry["pid"], signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + grace
            while _alive(entry) and time.monotonic() < end:
                time.sleep(0.1)
            if _alive(entry):
                try:
                    os.killpg(entry["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            stopped.append(f"{entry['name']} ({entry['pid']})")
        # After the agent (which stops its pods itself): whatever it left, crashed or not.
        stopped += self._stop_pods()
        # The real node's containers, shims and namespace (whether or not it came up).
        if (self.state / "node" / "node.sh").is_file():
            stopped += RealNode(self.state / "node", self.pki).down()
        # Reap our own children (a fixture's Popen) so none stays a zombie.
        for entry in entries:
            try:
                os.waitpid(entry["pid"], os.WNOHANG)
            except ChildProcessError:
                pass
        left = [f"{e['name']} ({e['pid']})" for e in entries if _alive(e)]
        if left:
            raise ControlPlaneError(f"still running after kube-down: {', '.join(left)}")
        if not keep_state and self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
        return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m harness.kube", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "urls"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    parser.add_argument("--node", choices=["agent", "real", "none"], default="agent",
                        help="what runs the pods: the node agent (default), a real kubelet and containerd, "
                             "or nothing (the API server and controllers only)")
    args = parser.parse_args(argv)
    plane = ControlPlane(args.state)
    if args.command == "urls":
        try:
            services = json.loads((args.state / "node" / "services.json").read_text())
        except (OSError, ValueError):
            print(f"no node agent running from {args.state}", file=sys.stderr)
            return 1
        for key, svc in sorted(services.items()):
            for port in svc["ports"]:
                print(f"{key}:{port}\thttp://{svc['address']}:{port}")
        return 0
    if args.command == "status":
        running = plane.running()
        print(json.dumps(running, indent=1) if running else f"not running ({args.state})")
        return 0 if running else 1
    if args.command == "down":
        stopped = plane.down()
        print(f"stopped {', '.join(stopped)}" if stopped else f"nothing was running ({args.state})")
        return 0
    if plane.running():
        print(f"a control plane is already running from {args.state} "
              f"(pids {[e['pid'] for e in plane.running()]}); not starting another", file=sys.stderr)
        print(f"export KUBECONFIG={plane.kubeconfig}")
        return 0
    try:
        kubeconfig = plane.up(say=lambda line: print(line, flush=True), node=None if args.node == "none" else args.node)
    except ControlPlaneError as e:
        print(f"kube-up failed: {e}", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
