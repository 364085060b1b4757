#!/usr/bin/env bash
# Install what Conveyor needs from Debian, only when something is missing.
set -euo pipefail
pkgs=(build-essential pkg-config libhiredis-dev libevent-dev libcurl4-openssl-dev libcjson-dev
      libpq-dev libconfig-dev libssl-dev libcriterion-dev librdkafka-dev redis-server
      postgresql-15 curl)
pkgs+=("$@")   # extra packages for one target (make fuzz: clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "conveyor: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "conveyor: these Debian packages are missing: ${missing[*]}" >&2
        echo "conveyor: run 'make deps' as root (or install them with apt-get)" >&2
        exit 1
    fi
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
