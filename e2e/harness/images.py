"""Container images for the real node (#27), built without a docker engine.

The push-server and push-operator images come from the repository's Dockerfiles: their
final stage (what users run) is read instruction by instruction and applied with umoci to
a stand-in of its base. The build stages compile the workspace, which CI has already done:
their outputs are mapped to this checkout's files (`/out/<bin>` → the release binary,
`/web/...` → push-server/web), so the image holds the binary the tests run everywhere
else (the debug build; the Dockerfile's stage builds release). An instruction this builder does not know fails the build: a Dockerfile change can
not be silently skipped.

Base images cannot be pulled here (no container registry). The stand-ins are assembled
from this machine's Debian packages:
- `gcr.io/distroless/cc-debian12:nonroot`: the files of libc6, libgcc-s1 and libssl3, the
  CA bundle, /etc/passwd and /etc/group with distroless's users (root 0, nobody 65534,
  nonroot 65532), /tmp (1777) and /home/nonroot; no shell, no package manager, as the
  real base (`test_real_node.py` checks it).
- the Redis image (`docker.io/library/redis:7.2-alpine`, the operator's default): Debian's
  redis-server and redis-cli with busybox for the shell and tools its scripts use.
- the pod sandbox (`pause`): a static C program that waits for a signal, as the real one.
Each image is written as an OCI archive and imported into the node's containerd.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .core import REPO

DISTROLESS_CC_NONROOT = "gcr.io/distroless/cc-debian12:nonroot"
REDIS_IMAGE = "docker.io/library/redis:7.2-alpine"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
# distroless's users and groups (its base's /etc/passwd and /etc/group).
DISTROLESS_PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
                     "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                     "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
DISTROLESS_GROUP = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
# The Debian packages whose files make the cc base (distroless builds it from the same).
CC_PACKAGES = ("libc6", "libgcc-s1", "libssl3")
SHELLS = ("bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "bin/busybox")

PAUSE_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction term = {.sa_handler = stop}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &term, NULL);
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGCHLD, &child, NULL);
  for (;;) pause();
}
"""


class ImageBuildError(RuntimeError):
    pass


def _run(*cmd) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise ImageBuildError(f"{' '.join(map(str, cmd))}: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _copy_into(rootfs: Path, source: Path, target: str) -> None:
    """Copies a file, symlink or directory tree to `target` (absolute, in the image)."""
    dest = rootfs / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        os.symlink(os.readlink(source), dest)
    elif source.is_dir():
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, dest)


def _package_files(package: str) -> list[Path]:
    """A Debian package's files and symlinks as installed here (its docs left out, as
    distroless leaves them out)."""
    files = []
    for line in _run("dpkg", "-L", package).splitlines():
        path = Path(line)
        if not line.startswith("/") or line.startswith("/usr/share/doc") or line.startswith("/usr/share/lintian"):
            continue
        if path.is_symlink() or path.is_file():
            files.append(path)
    return files


def _with_merged_usr(rootfs: Path) -> None:
    """Debian 12's layout: /bin, /lib, /lib64 and /sbin are links into /usr."""
    for top in ("bin", "lib", "lib64", "sbin"):
        (rootfs / "usr" / top).mkdir(parents=True, exist_ok=True)
        link = rootfs / top
        if not link.exists() and not link.is_symlink():
            link.symlink_to(f"usr/{top}")


def _with_users(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(DISTROLESS_PASSWD)
    (etc / "group").write_text(DISTROLESS_GROUP)
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    tmp = rootfs / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    home = rootfs / "home" / "nonroot"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, 65532, 65532)


def distroless_cc_rootfs(rootfs: Path) -> None:
    """The stand-in of gcr.io/distroless/cc-debian12:nonroot (module docstring)."""
    _with_merged_usr(rootfs)
    for package in CC_PACKAGES:
        for path in _package_files(package):
            _copy_into(rootfs, path, str(path))
    _copy_into(rootfs, Path("/etc/ssl/certs/ca-certificates.crt"), "/etc/ssl/certs/ca-certificates.crt")
    _with_users(rootfs)
    (rootfs / "etc" / "os-release").write_text('PRETTY_NAME="Distroless (stand-in from Debian 12 packages)"\n')


def _shared_libraries(binary: Path) -> list[Path]:
    """What the dynamic loader maps for `binary` on this machine (ldd)."""
    libs = []
    for line in _run("ldd", binary).splitlines():
        parts = line.split()
        candidates = [parts[2]] if "=>" in parts and len(parts) > 2 else parts[:1]
        for candidate in candidates:
            if candidate.startswith("/"):
                libs.append(Path(candidate))
    return libs


def redis_rootfs(rootfs: Path) -> None:
    """The Redis image's stand-in: redis-server, redis-cli (and the sentinel, which is
    redis-server by another name) with their libraries; busybox for sh, timeout, getent's
    stand-in and the text tools the operator's scripts run."""
    _with_merged_usr(rootfs)
    for name in ("redis-server", "redis-cli"):
        binary = Path(shutil.which(name) or f"/usr/bin/{name}")
        _copy_into(rootfs, binary.resolve(), f"/usr/local/bin/{name}")
        for lib in _shared_libraries(binary):
            _copy_into(rootfs, lib.resolve(), str(lib))
    os.symlink("redis-server", rootfs / "usr/local/bin/redis-sentinel")
    busybox = Path("/bin/busybox")
    _copy_into(rootfs, busybox, "/bin/busybox")
    for applet in _run(busybox, "--list").split():
        link = rootfs / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    _with_users(rootfs)
    (rootfs / "etc" / "passwd").write_text(DISTROLESS_PASSWD + "redis:x:999:1000:redis:/data:/sbin/nologin\n")
    (rootfs / "data").mkdir(exist_ok=True)


def pause_rootfs(rootfs: Path, work: Path) -> None:
    source = work / "pause.c"
    source.write_text(PAUSE_C)
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    _run("gcc", "-static", "-O2", "-o", rootfs / "bin" / "pause", source)


STAND_INS: dict[str, Callable[[Path], None]] = {DISTROLESS_CC_NONROOT: distroless_cc_rootfs}


@dataclass
class FinalStage:
    """The last stage of a Dockerfile: its base and its instructions, continuation lines
    joined, comments dropped."""
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, dockerfile: Path) -> FinalStage:
        logical, current = [], ""
        for raw in dockerfile.read_text().splitlines():
            line = raw.strip()
            if line.startswith("#") or not (line or current):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            logical.append(current + line)
            current = ""
        stage: FinalStage | None = None
        for line in logical:
            keyword, _, rest = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage = cls(base=rest.split()[0])
            elif stage is not None:
                stage.instructions.append((keyword, rest.strip()))
        if stage is None:
            raise ImageBuildError(f"{dockerfile}: no FROM")
        return stage


@dataclass
class Built:
    name: str
    archive: Path
    digest: str  # the image manifest's digest
    config_digest: str  # the image config's digest: containerd's image id


class ImageBuilder:
    """Builds OCI archives under `work` (one layout per image)."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        if shutil.which("umoci") is None:
            raise ImageBuildError("umoci not installed (Debian package umoci; .ci/setup installs it)")

    def _build(self, name: str, populate: Callable[[Path], None], config: list[str]) -> Built:
        slug = name.replace("/", "_").replace(":", "_")
        layout, bundle = self.work / slug, self.work / f"{slug}.bundle"
        for path in (layout, bundle):
            if path.exists():
                shutil.rmtree(path)
        _run("umoci", "init", "--layout", layout)
        _run("umoci", "new", "--image", f"{layout}:build")
        _run("umoci", "unpack", "--image", f"{layout}:build", bundle)
        populate(bundle / "rootfs")
        _run("umoci", "repack", "--image", f"{layout}:build", bundle)
        _run("umoci", "config", "--image", f"{layout}:build", "--tag", "image",
             "--architecture", "amd64", "--os", "linux", *config)
        _run("umoci", "rm", "--image", f"{layout}:build")
        _run("umoci", "gc", "--layout", layout)
        shutil.rmtree(bundle)
        index = json.loads((layout / "index.json").read_text())
        (manifest,) = index["manifests"]
        config_digest = json.loads((layout / "blobs" / "sha256" / manifest["digest"].split(":")[1]).read_text())["config"]["digest"]
        # containerd names an imported image by this annotation.
        manifest.setdefault("annotations", {})["io.containerd.image.name"] = name
        (layout / "index.json").write_text(json.dumps(index))
        archive = self.work / f"{slug}.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(layout.iterdir()):
                tar.add(entry, arcname=entry.name)
        return Built(name=name, archive=archive, digest=manifest["digest"], config_digest=config_digest)

    def from_dockerfile(self, dockerfile: Path, name: str, stage_outputs: dict[str, Callable[[str], Path]]) -> Built:
        """The final stage of `dockerfile` on its base's stand-in. `stage_outputs` maps a
        build stage's name to where its output paths are in this checkout."""
        stage = FinalStage.parse(dockerfile)
        if stage.base not in STAND_INS:
            raise ImageBuildError(f"{dockerfile}: no stand-in for base {stage.base} (known: {', '.join(STAND_INS)})")
        copies: list[tuple[Path, str]] = []
        config: list[str] = []
        for keyword, rest in stage.instructions:
            if keyword == "COPY":
                words = shlex.split(rest)
                source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
                paths = [w for w in words if not w.startswith("--")]
                if source_stage not in stage_outputs or len(paths) != 2:
                    raise ImageBuildError(f"{dockerfile}: COPY {rest}: only `COPY --from=<known stage> src dst`")
                copies.append((stage_outputs[source_stage](paths[0]), paths[1]))
            elif keyword == "ENV":
                key, _, value = rest.partition("=")
                config += ["--config.env", f"{key.strip()}={value.strip()}"]
            elif keyword == "USER":
                config += ["--config.user", rest]
            elif keyword == "EXPOSE":
                for port in rest.split():
                    config += ["--config.exposedports", port if "/" in port else f"{port}/tcp"]
            elif keyword == "ENTRYPOINT":
                for word in json.loads(rest):
                    config += ["--config.entrypoint", word]
            elif keyword == "CMD":
                for word in json.loads(rest):
                    config += ["--config.cmd", word]
            else:
                raise ImageBuildError(f"{dockerfile}: final stage instruction {keyword} not supported by this builder")
        for source, _ in copies:
            if not source.exists():
                raise ImageBuildError(f"{dockerfile}: {source} not built")

        def populate(rootfs: Path) -> None:
            STAND_INS[stage.base](rootfs)
            for source, target in copies:
                # The file itself, as a build stage's output would be, not a link to it.
                _copy_into(rootfs, source.resolve(), target)

        return self._build(name, populate, config)

    def redis(self) -> Built:
        return self._build(REDIS_IMAGE, redis_rootfs, ["--config.entrypoint", "redis-server", "--config.workingdir", "/data"])

    def pause(self) -> Built:
        return self._build(PAUSE_IMAGE, lambda rootfs: pause_rootfs(rootfs, self.work),
                           ["--config.entrypoint", "/bin/pause", "--config.user", "65535:65535"])


def repository_images(builder: ImageBuilder, binaries: dict[str, Path], tag: str) -> list[Built]:
    """The push-server and push-operator images from their Dockerfiles, tagged `tag`, with
    `binaries` (name → path) as the build stage's output. The suite passes the build it
    tests everywhere else (the workspace's debug build: CI builds no release)."""
    web = REPO / "push-server" / "web"

    def build_output(path: str) -> Path:
        if not path.startswith("/out/"):
            raise ImageBuildError(f"build stage output {path}: expected /out/<binary>")
        name = path.removeprefix("/out/")
        if name not in binaries:
            raise ImageBuildError(f"build stage output {path}: no binary {name} given")
        return binaries[name]

    def client_output(path: str) -> Path:
        if not path.startswith("/web/"):
            raise ImageBuildError(f"client stage output {path}: expected /web/...")
        return web / path.removeprefix("/web/")

    return [
        builder.from_dockerfile(REPO / "push-server" / "Dockerfile", f"ghcr.io/pushcluster/push-server:{tag}",
                                {"build": build_output, "client": client_output}),
        builder.from_dockerfile(REPO / "operator" / "Dockerfile", f"ghcr.io/pushcluster/push-operator:{tag}",
                                {"build": build_output}),
    ]
