#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup runs from a trap
# tests/ui/run.sh - `make ui-test`: the dashboard end to end in a real browser.
#
# Installs what is missing first (idempotent; as root, or through sudo): Debian's chromium,
# redis-server, PostgreSQL and Node.js with npm (scripts/deps.sh run ui), then playwright-core
# at the exact version of tests/ui/package.json into build/ui/node_modules (npm; again only
# when that file changed). playwright-core drives /usr/bin/chromium headless; it downloads
# no browser of its own.
#
# Starts, on free 127.0.0.1 ports in a temp dir, and stops at exit whatever happens: redis
# (AOF), PostgreSQL (migrated and seeded by conveyorctl), conveyor-sim, conveyor-api and one
# conveyor-worker (activation, noop, order-fetch; the upstreams on the sim, Mirakl with a
# budget of one call a second so that fetches posted together wait for it), with two keys:
# "ops" (operator and orders: the one that logs in) and "producer" (noop and activation:
# submits jobs; refused by the login).
# Then runs tests/ui/e2e.js, which logs in, watches queue numbers move as jobs flow, makes
# jobs go dead, searches, inspects, purges through the confirmation dialog, replays by
# clicking and sees the replay succeed, and logs out. Screenshots go to build/ui/screenshots/
# (kept), logs to the temp dir (printed and kept on failure). The exit status is e2e.js's;
# a sanitizer report in a server log fails the run too.
#
# Env knobs: UI_BIN (bin: the release build; make test passes build/san/bin),
# UI_TIMEOUT_S (240: the whole browser run), UI_HEADED=1 (show the browser, needs a display),
# UI_CHROMIUM (/usr/bin/chromium), CONVEYOR_KEEP_TEST_DIR=1 (keep the temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

BIN=${UI_BIN:-$ROOT/bin}
case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
TIMEOUT_S=${UI_TIMEOUT_S:-240}
NODEDIR=$ROOT/build/ui
SHOTS=$NODEDIR/screenshots

# ---- installs ---------------------------------------------------------------------------
bash "$ROOT/scripts/deps.sh" run ui
if ! cmp -s "$ROOT/tests/ui/package.json" "$NODEDIR/package.installed.json"; then
    echo "ui-test: npm installing playwright-core into $NODEDIR" >&2
    mkdir -p "$NODEDIR"
    rm -f "$NODEDIR/package.installed.json"
    cp "$ROOT/tests/ui/package.json" "$NODEDIR/package.json"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core fetches no browser anyway; belt and braces
    (cd "$NODEDIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund \
        --omit=dev --no-package-lock --loglevel=error >&2) ||
        { echo "ui-test: npm install failed" >&2; exit 1; }
    cp "$ROOT/tests/ui/package.json" "$NODEDIR/package.installed.json"
fi
for b in conveyorctl conveyor-sim conveyor-api conveyor-worker; do
    [ -x "$BIN/$b" ] || { cv_err "missing $BIN/$b: run 'make all' first"; exit 1; }
done

# ---- the stack --------------------------------------------------------------------------
T=$(scratch_dir conveyor-ui)
export CV_STATE_DIR=$T
status=1

cleanup() {
    set +e
    trap - EXIT INT TERM
    CV_QUIET=1 stop_pids "$T" 20 worker api sim
    CV_QUIET=1 stop_pg "$T"
    CV_QUIET=1 stop_redis "$T/redis"
    if [ "$status" -eq 0 ] && grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' \
        "$T"/*.log >/dev/null 2>&1; then
        cv_err "a sanitizer report in $(grep -lE 'Sanitizer|runtime error:' "$T"/*.log | tr '\n' ' ')"
        status=1
    fi
    if [ "$status" -ne 0 ]; then
        for f in "$T"/*.log; do log_tail "$f" 40; done
        echo "ui-test: failed (status $status); files kept in $T; screenshots in $SHOTS" >&2
    elif [ "${CONVEYOR_KEEP_TEST_DIR:-0}" = 1 ]; then
        echo "ui-test: files kept in $T" >&2
    else
        CV_QUIET=1 drop_pg "$T"
        rm -rf "$T"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit' INT
trap 'status=143; exit' TERM

REDIS_PORT=$(start_on_free_port start_redis "$T/redis")
PG_PORT=$(start_on_free_port start_pg "$T")
export CONVEYOR_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export CONVEYOR_PG_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/conveyor
export CONVEYOR_MIGRATIONS=$ROOT/migrations
export CONVEYOR_LOG_LEVEL=${CONVEYOR_LOG_LEVEL:-info}
unset CONVEYOR_CONFIG
for step in migrate seed; do
    "$BIN/conveyorctl" "$step" >>"$T/conveyorctl.log" 2>&1 ||
        { cv_err "conveyorctl $step failed"; exit 1; }
done
# user 9 cannot pay for an offer: its activation fails for good without holding money (a dead
# letter that may be purged)
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d conveyor -Xq \
    -c 'UPDATE accounts SET balance = 4.00 WHERE user_id = 9' >>"$T/conveyorctl.log" 2>&1

OPS_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PRODUCER_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
export CONVEYOR_API_KEYS="ops:$(sha "$OPS_KEY"):operator|orders,producer:$(sha "$PRODUCER_KEY"):noop|activation"
# quick retries, heartbeats and polls, so that the run takes seconds
export CONVEYOR_RETRY_BASE_MS=50 CONVEYOR_RETRY_MAX_MS=400 CONVEYOR_BLOCK_MS=100
export CONVEYOR_HEARTBEAT_MS=200 CONVEYOR_HTTP_THREADS=2
# Sanitizer reports (UI_BIN=build/san/bin) go to each server's log, scanned at the end.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# start_server NAME CMD... : CMD gets --port PORT on a free port, and is ready when GET /health
# answers; a port lost to another process in between gets another try (3 in all). Prints the
# port.
start_server() {
    local name=$1 port try
    shift
    for try in 1 2 3; do
        port=$(free_port 1)
        if start_bg "$name" "$T/$name.log" "$@" --port "$port" &&
            wait_http "http://127.0.0.1:$port/health" 30; then
            echo "$port"
            return 0
        fi
        CV_QUIET=1 stop_pids "$T" 5 "$name"
        cv_err "$name on port $port failed (try $try of 3)"
    done
    return 1
}

SIM_PORT=$(start_server sim "$BIN/conveyor-sim")
export CONVEYOR_ACTIVATION_URL=http://127.0.0.1:$SIM_PORT
# Every upstream on the sim with deploy/demo.env's credentials (the sim runs already: the
# webhook target this also sets is not used), and Mirakl's shared budget at one call a
# second, no burst: the Upstreams page then shows the fetches' latency and their waits.
pipeline_env "$SIM_PORT" 0
export CONVEYOR_UPSTREAMS_MIRAKL_RATE_PER_MIN=60 CONVEYOR_UPSTREAMS_MIRAKL_RATE_BURST=1
API_PORT=$(start_server api "$BIN/conveyor-api")
start_bg worker-1 "$T/worker-1.log" "$BIN/conveyor-worker" --types activation,noop,order-fetch \
    --concurrency 8

echo "ui-test: api http://127.0.0.1:$API_PORT, sim http://127.0.0.1:$SIM_PORT, files in $T" >&2
mkdir -p "$SHOTS"
rm -f "$SHOTS"/*.png
set +e
UI_API_URL=http://127.0.0.1:$API_PORT UI_SIM_URL=http://127.0.0.1:$SIM_PORT \
    UI_OPS_KEY=$OPS_KEY UI_PRODUCER_KEY=$PRODUCER_KEY UI_SHOTS=$SHOTS \
    UI_DEADLINE_MS=$((TIMEOUT_S * 1000)) NODE_PATH=$NODEDIR/node_modules \
    timeout --kill-after=10 "$((TIMEOUT_S + 30))" node "$ROOT/tests/ui/e2e.js"
status=$?
set -e
[ "$status" -ne 124 ] || cv_err "the browser run did not end within ${TIMEOUT_S}s"
exit "$status"
