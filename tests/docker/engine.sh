#!/usr/bin/env bash
# Test-only: make a Docker engine answer on this machine (a Debian host with no registry).
# Installs docker.io (+ debootstrap for tests/docker/build_base.py) when dockerd is missing,
# starts dockerd when none answers. Exit 0 = an engine answers; otherwise exit 1 with ONE
# line on stdout saying why (the docker tier prints it as its skip reason).
set -uo pipefail
LOG="${COMPAT_DOCKERD_LOG:-$(mktemp -t compat-dockerd.XXXXXX)}"
APT_LOG="$(mktemp -t compat-docker-apt.XXXXXX)"

answers() { python3 - <<'PY' >/dev/null 2>&1
import docker
docker.from_env(version="auto", timeout=5).ping()
PY
}

if answers; then echo "docker engine: already running"; exit 0; fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "no dockerd and cannot install it here (needs root and apt-get)"; exit 1
    fi
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap; } \
            >"$APT_LOG" 2>&1; then
        echo "apt-get install docker.io debootstrap failed: $(tail -n 1 "$APT_LOG")"; exit 1
    fi
fi
if [ "$(id -u)" != 0 ]; then echo "dockerd is installed but not running, and starting it needs root"; exit 1; fi
nohup dockerd >"$LOG" 2>&1 &
for _ in $(seq 1 60); do
    if answers; then echo "docker engine: started dockerd (log $LOG)"; exit 0; fi
    sleep 1
done
echo "dockerd did not answer within 60 s: $(tail -n 1 "$LOG")"
exit 1
