"""Test-only: build a Python base image without a registry (Debian packages only).

    python3 tests/docker/build_base.py [--suite bookworm] [--tag compat-test/python:3.11]

debootstrap a minimal Debian suite (the mirror apt on this host is configured with),
``docker import`` it, then install Debian's python3 on top (apt over the same mirror).
Reused when the tag exists. Users with a registry never need this: the runtime's default
base is the official ``python:X.Y-slim-bookworm``. Prints the tag on its last line.
Uses the Docker SDK (no docker CLI). See ../shared/DOCKER-FACTS.md for the measurements.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

PYTHON_OF = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
           *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]


def mirrors() -> tuple[str, str | None]:
    """(main mirror, security mirror) from this host's apt configuration."""
    main = security = None
    for path in SOURCES:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^]]*]\s+)?(\S+)", text, re.M):
            if "security" in uri:
                security = security or uri
            else:
                main = main or uri
    if main is None:
        sys.exit("build_base: no Debian mirror found in the apt sources")
    return main, security


def exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_min(client: docker.DockerClient, suite: str, tag: str) -> None:
    main, security = mirrors()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="compat-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", suite, str(rootfs), main], check=True,
                       stdout=subprocess.DEVNULL)
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / sub).glob("*"):
                if p.is_file():
                    p.unlink()
        lines = [f"deb {main} {suite} main", f"deb {main} {suite}-updates main"]
        if security:
            lines.append(f"deb {security} {suite}-security main")
        (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(rootfs, arcname=".")
        shutil.rmtree(rootfs)
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(str(tar_path), repository=repo, tag=version or "latest",
                                          changes=["ENV LANG=C.UTF-8"])
    print(f"build_base: {tag} imported in {time.monotonic() - t0:.0f} s", flush=True)


def build_python(client: docker.DockerClient, min_tag: str, tag: str) -> None:
    t0 = time.monotonic()
    dockerfile = (f"FROM {min_tag}\n"
                  "RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv"
                  " ca-certificates && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb\n")
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True,
                        labels={"compat-matrix.test-base": "1"})
    print(f"build_base: {tag} built in {time.monotonic() - t0:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="bookworm", choices=sorted(PYTHON_OF))
    ap.add_argument("--tag", default=None, help="default compat-test/python:<the suite's Python>")
    args = ap.parse_args()
    tag = args.tag or f"compat-test/python:{PYTHON_OF[args.suite]}"
    client = docker.from_env(version="auto")
    if exists(client, tag):
        print(f"build_base: {tag} reused", flush=True)
    else:
        min_tag = f"compat-test/{args.suite}-min:latest"
        if not exists(client, min_tag):
            build_min(client, args.suite, min_tag)
        build_python(client, min_tag, tag)
    print(tag)


if __name__ == "__main__":
    main()
