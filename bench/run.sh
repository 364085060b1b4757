#!/usr/bin/env bash
# bench/run.sh - `make bench`: Conveyor's figures on this machine, printed, never asserted.
#
# Starts its own redis-server, PostgreSQL, simulator and API (release builds) on free
# 127.0.0.1 ports in a temp dir, measures, and stops everything it started:
#   single-POST ingest    wrk POSTing {} to /v1/jobs/noop
#   batch ingest          wrk POSTing arrays of 1000 {} to /v1/jobs/noop/batch
#   noop drain            200k queued noop jobs drained by 1, then 2 workers (+ worker RSS)
#   activation            20k queued activations through 2 workers, PostgreSQL and the sim
#   submit->done latency  noop jobs POSTed at a steady rate while 2 workers run: p50/p99
# Knobs: BENCH_SECONDS (5), BENCH_NOOP (200000), BENCH_ACTIVATIONS (20000).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SECS=${BENCH_SECONDS:-5}
NOOP=${BENCH_NOOP:-200000}
ACT=${BENCH_ACTIVATIONS:-20000}
CORES=$(nproc)
BIN=$ROOT/bin
CVB=$ROOT/build/rel/bench/cvbench
T=$(scratch_dir conveyor-bench)
export CV_STATE_DIR=$T CV_QUIET=1

cleanup() {
    set +e
    stop_pids "$T" 20
    stop_redis "$T/redis"
    drop_pg "$T"
    rm -rf "$T"
}
trap cleanup EXIT

read -r RP PP AP SP <<<"$(free_port 4 | tr '\n' ' ')"
start_redis "$T/redis" "$RP"
start_pg "$T" "$PP"
export CONVEYOR_REDIS_URL=redis://127.0.0.1:$RP
export CONVEYOR_PG_DSN=postgresql://postgres@127.0.0.1:$PP/conveyor
export CONVEYOR_ACTIVATION_URL=http://127.0.0.1:$SP
export CONVEYOR_LOG_LEVEL=warn
"$BIN/conveyorctl" migrate --dir "$ROOT/migrations" >/dev/null
"$BIN/conveyorctl" seed >/dev/null
KEY=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export CONVEYOR_API_KEYS="bench:$("$BIN/conveyorctl" hash-key "$KEY"):*"
start_bg sim "$T/sim.log" "$BIN/conveyor-sim" --port "$SP"
CONVEYOR_HTTP_PORT=$AP start_bg api "$T/api.log" "$BIN/conveyor-api"
wait_http "http://127.0.0.1:$SP/health" 20
wait_http "http://127.0.0.1:$AP/health" 20
API=http://127.0.0.1:$AP

figure() { printf '%-28s %12s %-8s cores=%s\n' "$1" "$2" "$3" "$CORES"; }
flush() { redis-cli -p "$RP" FLUSHALL >/dev/null; }
psql_q() { psql -qtA "$CONVEYOR_PG_DSN" -c "$1"; }

# wrk SCRIPT URL CONNS -> requests/s, after checking that every answer was 2xx
wrk_rate() {
    local out
    out=$(wrk -t2 -c"$3" -d"${SECS}s" -s "$1" "$2")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "bench: non-2xx answers during $2:" >&2
        echo "$out" >&2
        return 1
    fi
    awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out"
}

cat >"$T/post.lua" <<EOT
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
EOT
{
    echo 'wrk.method = "POST"'
    printf 'wrk.body = "['
    for ((i = 0; i < 999; i++)); do printf '{},'; done
    printf '{}]"\n'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    echo "wrk.headers[\"Authorization\"] = \"Bearer $KEY\""
} >"$T/batch.lua"

echo "Conveyor bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $CORES cores, ${SECS}s per ingest run"
flush
figure "ingest_single_post" "$(wrk_rate "$T/post.lua" "$API/v1/jobs/noop" 64)" "jobs/s"
flush
r=$(wrk_rate "$T/batch.lua" "$API/v1/jobs/noop/batch" 4)
figure "ingest_batch_1000" "$((r * 1000))" "jobs/s"

drain() { # WORKERS TYPE N CONCURRENCY
    local w rate rss=0 pid
    for ((w = 1; w <= $1; w++)); do
        start_bg "worker$w" "$T/worker$w.log" "$BIN/conveyor-worker" --types "$2" --concurrency "$4"
    done
    rate=$("$CVB" wait "$2" "$3" 300 | awk '{print $2}')
    for ((w = 1; w <= $1; w++)); do
        pid=$(pidfile_pid "$T/pids/worker$w.pid")
        rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    done
    stop_pids "$T" 20 worker
    echo "$rate $rss"
}

for n in 1 2; do
    flush
    "$CVB" fill noop "$NOOP" >/dev/null
    read -r rate rss < <(drain "$n" noop "$NOOP" 500)
    figure "noop_drain_${n}_worker" "$rate" "jobs/s"
    figure "worker_rss_noop_${n}" "$((rss / 1024))" "MB"
done

flush
psql_q "TRUNCATE transactions, user_offers; UPDATE accounts SET balance = 100000000"
"$CVB" fill activation "$ACT" >/dev/null
read -r rate rss < <(drain 2 activation "$ACT" 128)
figure "activation_2_workers" "$rate" "jobs/s"
figure "worker_rss_activation" "$((rss / 1024))" "MB"
ok=$(psql_q "SELECT count(*) FROM transactions WHERE status='SUCCESS'")
[ "$ok" = "$ACT" ] || echo "bench: only $ok of $ACT activations succeeded" >&2

flush
start_bg worker1 "$T/worker1.log" "$BIN/conveyor-worker" --types noop --concurrency 64
start_bg worker2 "$T/worker2.log" "$BIN/conveyor-worker" --types noop --concurrency 64
"$CVB" latency "$API" "$KEY" 5000 1000 | while read -r name v unit; do figure "$name" "$v" "$unit"; done
stop_pids "$T" 20 worker
