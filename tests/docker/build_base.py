"""Test-only: build a Python base image without a registry (Debian packages only).

    python3 tests/docker/build_base.py [--suite bookworm] [--tag compat-test/python:3.11]
    python3 tests/docker/build_base.py --python 3.7 [--tag compat-test/python:3.7]

debootstrap a minimal Debian suite (the mirror apt on this host is configured with),
``docker import`` it, then install Debian's python3 on top (apt over the same mirror):
bullseye → 3.9, bookworm → 3.11, trixie → 3.13 (``--python`` of those picks the suite).

Any other ``--python X.Y`` (the catalog's 3.7, 3.8, 3.10, 3.12) has no Debian release
here (buster is gone from the mirror), so the image is bookworm-min plus the shared
libraries a CPython build links against plus a copy of **this host's** interpreter of
that version *at its own path* (its binary finds libpython through an embedded absolute
path; DOCKER-FACTS.md). The interpreter is found at run time by the runner's own
discovery (``runner.stacks.find_python``: ``$COMPAT_PYTHON_X_Y``, PATH, pyenv, uv) —
no host path is written in this file or anywhere in the project; its ``site-packages``
(host packages) and ``test`` folders are left out, and ``pythonX.Y`` is linked into
``/usr/local/bin``. This is a device for test machines without a registry only: users
get ``python:X.Y-slim-bookworm``.

Reused when the tag exists. Prints the tag on its last line. Uses the Docker SDK (no
docker CLI). See ../shared/DOCKER-FACTS.md for the measurements.
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

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_OF = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
SUITE_OF = {py: suite for suite, py in PYTHON_OF.items()}
# What a CPython built from source (pyenv) links against, in bookworm (DOCKER-FACTS.md).
CPYTHON_LIBS = ("libssl3 libsqlite3-0 libreadline8 libffi8 libncursesw6 libexpat1 libnsl2 libbz2-1.0"
                " liblzma5 zlib1g libuuid1 libgdbm6 ca-certificates")
COPIED_ON = "bookworm"
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


def host_interpreter(python: str) -> tuple[Path, str]:
    """(installation prefix, full version) of this host's interpreter of ``python``, found
    by the runner's own discovery at run time."""
    sys.path.insert(0, str(REPO_ROOT))
    from runner.stacks import find_python

    exe = find_python(python)
    if exe is None:
        sys.exit(f"build_base: no Python {python} on this host (runner.stacks.find_python found none)")
    out = subprocess.run([exe, "-c", "import sys, platform; print(sys.base_prefix); "
                          "print(platform.python_version())"],
                         capture_output=True, text=True, check=True).stdout.split()
    prefix = Path(out[0])
    if not (prefix / "bin" / f"python{python}").exists():
        sys.exit(f"build_base: {exe} has no bin/python{python} under its prefix {prefix}")
    return prefix, out[1]


def build_copied(client: docker.DockerClient, min_tag: str, python: str, tag: str) -> None:
    """bookworm-min + CPython's shared libraries + the host interpreter at its own path."""
    prefix, full = host_interpreter(python)
    t0 = time.monotonic()
    skip = {f"lib/python{python}/site-packages", f"lib/python{python}/test"}
    parents = [str(p) for p in reversed(prefix.parents) if str(p) != "/"]
    dockerfile = (f"FROM {min_tag}\n"
                  f"RUN apt-get update && apt-get install -y --no-install-recommends {CPYTHON_LIBS}"
                  " && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb\n"
                  f"COPY interp/ {prefix}/\n"
                  f"RUN mkdir -p {prefix}/lib/python{python}/site-packages"
                  + (f" && chmod 755 {' '.join(parents)}" if parents else "")
                  + f" && ln -s {prefix}/bin/python{python} /usr/local/bin/python{python}"
                  f" && python{python} -c 'import ssl, sqlite3, ctypes, venv, ensurepip, lzma, bz2, zlib'\n")

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = info.name.split("/", 1)[1] if "/" in info.name else ""
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        # World-readable for the non-root worker, set here: a `chmod -R` layer would copy
        # every file of the interpreter again (overlay copy-up: +92..165 MB per image).
        info.mode |= 0o555 if info.isdir() or info.mode & 0o100 else 0o444
        return info

    with tempfile.TemporaryFile() as ctx:
        with tarfile.open(fileobj=ctx, mode="w") as tar:
            data = dockerfile.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            tar.add(prefix, arcname="interp", filter=keep)
        ctx.seek(0)
        client.images.build(fileobj=ctx, custom_context=True, tag=tag, rm=True, forcerm=True,
                            labels={"compat-matrix.test-base": "1",
                                    "compat-matrix.test-base.interpreter": f"copied CPython {full}"})
    print(f"build_base: {tag} built in {time.monotonic() - t0:.0f} s (host CPython {full} copied "
          "at its own path)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default=None, choices=sorted(PYTHON_OF), help="default bookworm")
    ap.add_argument("--python", default=None, metavar="X.Y",
                    help="3.9/3.11/3.13: that Debian suite; any other: the host's interpreter copied")
    ap.add_argument("--tag", default=None, help="default compat-test/python:<the Python>")
    args = ap.parse_args()
    if args.suite and args.python and PYTHON_OF[args.suite] != args.python:
        ap.error(f"--suite {args.suite} has Python {PYTHON_OF[args.suite]}, not {args.python}")
    python = args.python or PYTHON_OF[args.suite or "bookworm"]
    suite = args.suite or SUITE_OF.get(python)
    tag = args.tag or f"compat-test/python:{python}"
    client = docker.from_env(version="auto")
    if exists(client, tag):
        print(f"build_base: {tag} reused", flush=True)
    else:
        min_tag = f"compat-test/{suite or COPIED_ON}-min:latest"
        if not exists(client, min_tag):
            build_min(client, suite or COPIED_ON, min_tag)
        if suite:
            build_python(client, min_tag, tag)
        else:
            build_copied(client, min_tag, python, tag)
    print(tag)


if __name__ == "__main__":
    main()
