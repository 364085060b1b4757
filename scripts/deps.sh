#!/usr/bin/env bash
# scripts/deps.sh [--check] [GROUP...] - the Debian packages Conveyor needs.
#
# GROUPs: build (compiler, pkg-config, the -dev libraries, Criterion), run (redis-server,
# PostgreSQL 15 with pgbench, curl), bench (wrk, and nginx-light for make bench's static-file
# baseline: its package's service is not used, bench/lib.sh starts its own), peers (make
# bench-peers: Debian's Celery with its Redis and PostgreSQL clients for /usr/bin/python3, and
# Node.js with npm for BullMQ, which npm puts in build/peers), fuzz (clang and its runtimes: make fuzz),
# ops (make check-deploy, tests/deploy/check.sh: prometheus for promtool, python3-yaml for
# /usr/bin/python3, systemd for systemd-analyze, Node.js with npm for the Kubernetes schemas
# that npm puts in build/ops), ui (make ui-test, tests/ui/run.sh: Debian's chromium, driven
# by playwright-core that npm puts in build/ui, so Node.js with npm). No GROUP: build, run and
# bench.
#   default   install what is missing with apt-get (as root, else through sudo).
#   --check   install nothing: name what is missing and how to get it, then exit 1.
# Silent and quick (one dpkg-query) when nothing is missing: the Makefile runs it before every
# build (see "dependencies" there).
set -euo pipefail

mode=install
if [ "${1:-}" = --check ]; then mode=check; shift; fi
[ $# -gt 0 ] || set -- build run bench

pkgs=()
for g in "$@"; do
    case "$g" in
    build) pkgs+=(build-essential pkg-config libhiredis-dev libevent-dev libcurl4-openssl-dev
                  libcjson-dev libpq-dev libconfig-dev libssl-dev libcriterion-dev librdkafka-dev) ;;
    run) pkgs+=(redis-server postgresql-15 curl) ;;
    bench) pkgs+=(wrk nginx-light) ;;
    # Node.js counts when node and npm already run, whoever installed them: a NodeSource
    # nodejs ships its own npm and conflicts with Debian's npm package.
    peers) pkgs+=(python3-celery python3-redis python3-psycopg2)
           command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
               pkgs+=(nodejs npm) ;;
    fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    ops) pkgs+=(prometheus python3-yaml systemd)
         command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
             pkgs+=(nodejs npm) ;;
    ui) pkgs+=(chromium)
        command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
            pkgs+=(nodejs npm) ;;
    *) echo "usage: $0 [--check] [build|run|bench|peers|fuzz|ops|ui]..." >&2; exit 2 ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
    # Not Debian: the package names mean nothing here. Building only needs pkg-config to know
    # the libraries; say what to look for when it does not.
    if pkg-config --exists hiredis libevent libcurl libcjson libpq libconfig openssl 2>/dev/null
    then
        exit 0
    fi
    echo "conveyor: not a Debian system; install the equivalents of: ${pkgs[*]}" >&2
    exit 1
fi

# One dpkg-query for all: "name status" for each package dpkg knows; unknown ones are missing.
installed=" $(dpkg-query -W -f='${Package}=${db:Status-Abbrev} ' "${pkgs[@]}" 2>/dev/null || true) "
missing=()
for p in "${pkgs[@]}"; do
    [[ "$installed" == *" $p=ii "* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$mode" = check ]; then
    cat >&2 <<MSG
conveyor: missing Debian packages: ${missing[*]}
conveyor: 'make deps' installs them (as root, or with sudo); 'make run', 'make up',
conveyor: 'make test' and 'make bench' install them first by themselves.
MSG
    exit 1
fi

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
# Debian's prometheus package (installed for its promtool) enables its own Prometheus server and,
# where systemd runs and no policy-rc.d forbids it, starts it on port 9090. Nothing here uses
# that server: stop and disable the one this very install started, never one that was there.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
