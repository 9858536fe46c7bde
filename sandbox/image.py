"""The sandbox base image, built without any image registry.

``build_base_image`` runs ``debootstrap`` for a minimal Debian (python3, pytest, git, a C
toolchain), adds the non-root ``sandbox`` user (uid 1000) and the job runner, strips setuid
bits and ``docker import``s the tree. The image is tagged and labelled with a hash of its
recipe (suite, packages, runner source, import changes), so a second call returns the
existing image at once: idempotent. The debootstrap tree is cached on disk by the hash of
its own inputs, so changing only the runner re-imports in seconds instead of minutes.

Where a registry is reachable, ``build_from_dockerfile`` builds the same recipe from the
``Dockerfile`` shipped next to this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oa_node.sandbox.base import SandboxError

RUNNER_PATH = Path(__file__).with_name("runner.py")
DOCKERFILE_PATH = Path(__file__).with_name("Dockerfile")
IMAGE_REPOSITORY = "oa-node/sandbox-base"
RECIPE_LABEL = "oa-node.recipe"
RUNNER_IN_IMAGE = "/opt/oa/runner.py"
SANDBOX_UID = 1000
DEFAULT_MIRROR = "http://deb.debian.org/debian"

DEFAULT_PACKAGES: tuple[str, ...] = (
    "build-essential",
    "ca-certificates",
    "git",
    "make",
    "python3",
    "python3-pip",
    "python3-pytest",
    "python3-setuptools",
    "python3-venv",
    "python3-wheel",
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the image's content; its hash names the image."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    uid: int = SANDBOX_UID
    changes: tuple[str, ...] = field(
        default=(
            f"USER {SANDBOX_UID}:{SANDBOX_UID}",
            "WORKDIR /workspace",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV HOME=/tmp",
            "ENV LANG=C.UTF-8",
            f'CMD ["python3", "-I", "{RUNNER_IN_IMAGE}"]',
        )
    )

    def rootfs_hash(self) -> str:
        """Inputs of the slow debootstrap stage only (runner and import changes excluded)."""
        doc = {"suite": self.suite, "variant": self.variant, "uid": self.uid,
               "packages": sorted(self.packages), "stage": "rootfs-v1"}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def hash(self) -> str:
        runner = hashlib.sha256(RUNNER_PATH.read_bytes()).hexdigest()
        doc = {"rootfs": self.rootfs_hash(), "runner": runner, "changes": list(self.changes),
               "stage": "image-v1"}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.hash()[:16]}"


def default_cache_dir() -> Path:
    base = os.environ.get("OA_NODE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "oa-node" / "sandbox"


def debian_mirror() -> str:
    """The Debian mirror: ``OA_NODE_DEBIAN_MIRROR``, else the host's apt sources, else
    deb.debian.org."""
    env = os.environ.get("OA_NODE_DEBIAN_MIRROR")
    if env:
        return env
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1)
            if uri.startswith(("http://", "https://")) and "security" not in uri:
                return uri
    return DEFAULT_MIRROR


def find_image(client: Any, recipe: Recipe | None = None) -> str | None:
    """The image ID (``sha256:...``) already built for ``recipe``, if any."""
    import docker.errors

    recipe = recipe or Recipe()
    try:
        return str(client.images.get(recipe.tag).id)
    except docker.errors.ImageNotFound:
        return None


def build_base_image(
    client: Any,
    recipe: Recipe | None = None,
    *,
    cache_dir: Path | None = None,
    mirror: str | None = None,
    progress: Progress = _quiet,
    force: bool = False,
) -> str:
    """Build (or find) the base image and return its digest, the image ID ``sha256:...``."""
    recipe = recipe or Recipe()
    if not force and (found := find_image(client, recipe)):
        progress(f"image {recipe.tag} already present: {found}")
        return found
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "build.lock", progress):
        if not force and (found := find_image(client, recipe)):
            return found  # built by another process while we waited
        rootfs = _rootfs(recipe, cache, mirror or debian_mirror(), progress)
        return _import(client, recipe, rootfs, cache, progress)


@contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another build holds the lock; waiting")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _rootfs(recipe: Recipe, cache: Path, mirror: str, progress: Progress) -> Path:
    """The debootstrapped tree for ``recipe`` (cached by its inputs' hash)."""
    rootfs = cache / f"rootfs-{recipe.rootfs_hash()[:16]}"
    done = rootfs / ".oa-complete"
    if done.exists():
        progress(f"reusing debootstrap tree {rootfs}")
        return rootfs
    if shutil.which("debootstrap") is None:
        raise SandboxError(
            "debootstrap is not installed: apt-get install -y debootstrap "
            "(or build from the Dockerfile where a registry is reachable)"
        )
    if os.geteuid() != 0:
        raise SandboxError("building the base image with debootstrap needs root")
    if rootfs.exists():
        shutil.rmtree(rootfs)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    cmd = [
        "debootstrap", f"--variant={recipe.variant}", "--components=main",
        "--include=" + ",".join(sorted(recipe.packages)), recipe.suite, str(work), mirror,
    ]
    progress("running " + " ".join(cmd) + " (several minutes)")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-30:], line]
        if line.startswith(("I: Retrieving", "I: Validating")) and "Packages" not in line:
            continue  # one line per package is noise; keep the stage lines
        progress(line)
    if proc.wait() != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise SandboxError("debootstrap failed:\n" + "\n".join(tail))
    progress(f"debootstrap done in {time.monotonic() - started:.0f}s; adding the sandbox user")
    _finish_rootfs(work, recipe.uid)
    (work / ".oa-complete").write_text(recipe.rootfs_hash() + "\n")
    work.rename(rootfs)
    return rootfs


def _finish_rootfs(root: Path, uid: int) -> None:
    """Add the non-root user, drop caches and setuid/setgid bits."""
    with open(root / "etc/passwd", "a") as fh:
        fh.write(f"sandbox:x:{uid}:{uid}:oa-node sandbox:/home/sandbox:/bin/sh\n")
    with open(root / "etc/group", "a") as fh:
        fh.write(f"sandbox:x:{uid}:\n")
    with open(root / "etc/shadow", "a") as fh:
        fh.write("sandbox:!:19000:0:99999:7:::\n")
    for d in ("home/sandbox", "workspace"):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chown(root / d, uid, uid)
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / d).glob("*"):
            if p.is_file():
                p.unlink()
    for f in ("etc/hostname", "etc/resolv.conf"):
        (root / f).unlink(missing_ok=True)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))


def _import(client: Any, recipe: Recipe, rootfs: Path, cache: Path, progress: Progress) -> str:
    """Tar the tree (with the current runner) and ``docker import`` it."""
    runner_dir = rootfs / RUNNER_IN_IMAGE.lstrip("/").rsplit("/", 1)[0]
    runner_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RUNNER_PATH, rootfs / RUNNER_IN_IMAGE.lstrip("/"))
    os.chmod(rootfs / RUNNER_IN_IMAGE.lstrip("/"), 0o644)
    full_hash = recipe.hash()
    tar_path = cache / f"image-{full_hash[:16]}.tar"
    progress(f"packing {rootfs} into {tar_path}")
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(rootfs)):
            if entry == ".oa-complete":
                continue
            tar.add(rootfs / entry, arcname=entry)
    repo, tag = recipe.tag.split(":")
    changes = [*recipe.changes, f"LABEL {RECIPE_LABEL}={full_hash}"]
    progress(f"importing as {recipe.tag}")
    try:
        client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag,
                                          changes=changes)
    finally:
        tar_path.unlink(missing_ok=True)
    digest = find_image(client, recipe)
    if digest is None:
        raise SandboxError(f"docker import finished but {recipe.tag} is missing")
    progress(f"built {recipe.tag}: {digest}")
    _prune_old(client, recipe, progress)
    return digest


def _prune_old(client: Any, recipe: Recipe, progress: Progress) -> None:
    """Remove base images of earlier recipes (each is ~0.5 GB); images in use stay."""
    import docker.errors

    for image in client.images.list(name=IMAGE_REPOSITORY):
        tags = [t for t in image.tags if t.startswith(IMAGE_REPOSITORY + ":")]
        if recipe.tag in image.tags or not tags or any("dockerfile" in t for t in tags):
            continue
        for tag in tags:
            try:
                client.images.remove(tag)
                progress(f"removed old base image {tag}")
            except docker.errors.APIError:
                pass  # in use by a container: keep it


def build_from_dockerfile(client: Any, *, progress: Progress = _quiet) -> str:
    """Build the equivalent image from ``Dockerfile`` (needs a reachable registry)."""
    recipe = Recipe()
    context = Path(tempfile.mkdtemp(prefix="oa-sandbox-ctx-"))
    try:
        shutil.copyfile(DOCKERFILE_PATH, context / "Dockerfile")
        shutil.copyfile(RUNNER_PATH, context / "runner.py")
        tag = f"{IMAGE_REPOSITORY}:dockerfile-{recipe.hash()[:16]}"
        for chunk in client.api.build(path=str(context), tag=tag, rm=True, decode=True,
                                      buildargs={"PACKAGES": " ".join(recipe.packages)}):
            if "error" in chunk:
                raise SandboxError(f"docker build failed: {chunk['error']}")
            if chunk.get("stream", "").strip():
                progress(chunk["stream"].rstrip())
        return str(client.images.get(tag).id)
    finally:
        shutil.rmtree(context, ignore_errors=True)
