#!/usr/bin/env bash
# bench/peers.sh - `make bench-peers`: Conveyor side by side with BullMQ and Celery, on the
# same machine, the same redis-server and the same PostgreSQL, in one run. Printed, never
# asserted.
#
# Installs what is missing first (idempotent; as root, or through sudo): Debian's wrk,
# redis-server, PostgreSQL, python3-celery with python3-redis and python3-psycopg2 (for
# /usr/bin/python3, not whatever `python3` is on PATH), Node.js and npm (scripts/deps.sh run
# bench peers), then BullMQ, ioredis and pg at the exact versions of bench/peers/package.json
# into build/peers/node_modules (npm; again only when that file changed).
#
# Starts on free 127.0.0.1 ports in a temp dir, and stops at exit, everything it runs:
# Conveyor's stack as `make bench` does (bench/lib.sh: Redis with AOF as shipped, PostgreSQL,
# the simulator, the API), and a second redis-server of the same binary and settings for the
# peers, with persistence off (PEERS_PERSIST=aof: AOF as Conveyor's). Then each workload in
# turn, PEERS_RUNS times, alternating Conveyor and each peer within every round:
#   submit_one     Conveyor: wrk POSTing {} to /v1/jobs/noop (64 connections, PEERS_SECONDS);
#                  BullMQ: queue.add() with 64 in flight; Celery: apply_async() in a loop
#   submit_bulk    Conveyor: wrk POSTing arrays of 1000 (4 connections); BullMQ: addBulk()
#                  of 1000, 4 in flight; Celery: group() of 1000 apply_async'd (one message per
#                  job through one producer: Celery has no bulk publish)
#   drain_1/2      PEERS_N queued noop jobs drained by 1, then 2 worker processes; with each
#                  the Redis CPU per drained job and the worker's peak RSS (VmHWM)
#   activation_2   PEERS_ACT queued activations through 2 worker processes, then the
#                  SUCCESS rows checked; the peers' worker RSS too
#   latency        PEERS_LAT_N noop jobs submitted at PEERS_RATE/s (open loop) to 2 running
#                  workers: p50/p99 submit->done
# Conveyor's side is measured as in bench/run.sh (cvbench fill, wait, latency); the peers'
# with bench/peers/bullmq_peer.js, celery_peer.py and meter.py (see their headers: how a
# peer's job end is seen, what a peer's activation does). Each figure's runs are summed up
# at the end: median, min..max, and the ratio Conveyor/peer of the medians.
#
# The peers' workers: BullMQ's Worker with concurrency 64 for noop jobs, 8 for activations
# (a pg.Pool of 8). Celery's worker with --pool=prefork, Celery's default and the one its
# docs run in production: --concurrency child processes (Celery's default, the cores, for
# noop jobs; 8 for activations, a PostgreSQL connection each); its RSS counts the children.
# --pool=threads (PEERS_CELERY_POOL) is faster when it runs but stalls: with the Redis
# transport a threads worker sometimes sat for seconds on a full prefetch, its threads idle
# (activations of one run: 800 jobs/s, then 29), which prefork never did here.
#
# Knobs: PEERS_RUNS (3), PEERS_N (50000: jobs per drain run and per submit run of a peer;
# Conveyor's submit runs last PEERS_SECONDS, as wrk runs), PEERS_ACT
# (PEERS_N/5), PEERS_RATE (1000/s), PEERS_LAT_N (5 s of PEERS_RATE), PEERS_SECONDS (5: each
# wrk run), PEERS_ONLY=bullmq|celery, PEERS_PERSIST=none|aof, PEERS_CONCURRENCY (64: BullMQ's
# noop concurrency, and Celery's with threads), PEERS_ACT_CONCURRENCY (8),
# PEERS_CELERY_POOL (prefork or threads), PEERS_CELERY_CONCURRENCY (noop: the cores for
# prefork, PEERS_CONCURRENCY for threads), PEERS_WORKLOADS (all: "submit_one submit_bulk
# drain_1 drain_2 activation latency", or some of them), BENCH_KEEP=1 (keep the temp dir and
# its logs).
set -euo pipefail
shopt -s inherit_errexit    # a failure inside $(...) fails the run it belongs to
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

RUNS=${PEERS_RUNS:-3}
N=${PEERS_N:-50000}
ACT=${PEERS_ACT:-$((N / 5))}
RATE=${PEERS_RATE:-1000}
LAT_N=${PEERS_LAT_N:-$((RATE * 5))}
SECS=${PEERS_SECONDS:-5}
CONC=${PEERS_CONCURRENCY:-64}
ACT_CONC=${PEERS_ACT_CONCURRENCY:-8}
POOL=${PEERS_CELERY_POOL:-prefork}
PERSIST=${PEERS_PERSIST:-none}
case ${PEERS_ONLY:-} in
'') PEERS=(bullmq celery) ;;
bullmq | celery) PEERS=("$PEERS_ONLY") ;;
*) echo "peers: PEERS_ONLY is bullmq or celery, not '$PEERS_ONLY'" >&2; exit 2 ;;
esac
WORKLOADS=()
for wl in ${PEERS_WORKLOADS:-submit_one submit_bulk drain_1 drain_2 activation latency}; do
    case $wl in
    submit_one | submit_bulk | activation | latency) WORKLOADS+=("$wl") ;;
    drain_1 | drain_2) WORKLOADS+=("drain ${wl#drain_}") ;;
    *) echo "peers: no workload '$wl' (PEERS_WORKLOADS)" >&2; exit 2 ;;
    esac
done
case $PERSIST in none | aof) ;; *) echo "peers: PEERS_PERSIST is none or aof" >&2; exit 2 ;; esac
case $POOL in threads | prefork) ;; *) echo "peers: PEERS_CELERY_POOL?" >&2; exit 2 ;; esac
CORES=$(nproc)
# Celery's pool (see the header): prefork runs --concurrency child processes (Celery's default
# concurrency: the cores), threads that many threads in the worker process
CELERY_CONC=${PEERS_CELERY_CONCURRENCY:-$([ "$POOL" = threads ] && echo "$CONC" || echo "$CORES")}
# a noop worker's concurrency, per system
declare -A NOOP_CONC=([bullmq]=$CONC [celery]=$CELERY_CONC)
BIN=$ROOT/bin
CVB=$ROOT/build/rel/bench/cvbench
PY=/usr/bin/python3     # Debian's python3-celery is installed for it (PATH may hold a pyenv)
PEERDIR=$ROOT/bench/peers
NODEDIR=$ROOT/build/peers

# ---- installs ---------------------------------------------------------------------------
bash "$ROOT/scripts/deps.sh" run bench peers
# npm installs again only when package.json changed since its last complete install
if ! cmp -s "$PEERDIR/package.json" "$NODEDIR/package.installed.json"; then
    echo "peers: npm installing $(tr -d '\n ' <"$PEERDIR/package.json" |
        sed 's/.*"dependencies":{\([^}]*\)}.*/\1/') into $NODEDIR" >&2
    mkdir -p "$NODEDIR"
    rm -f "$NODEDIR/package.installed.json"
    cp "$PEERDIR/package.json" "$NODEDIR/package.json"
    (cd "$NODEDIR" && npm install --no-audit --no-fund --omit=dev --no-package-lock \
        --loglevel=error >&2)
    cp "$PEERDIR/package.json" "$NODEDIR/package.installed.json"
fi
# no __pycache__ written into bench/peers
export NODE_PATH=$NODEDIR/node_modules PYTHONPATH=$PEERDIR PYTHONDONTWRITEBYTECODE=1

# ---- the stack --------------------------------------------------------------------------
T=$(scratch_dir conveyor-peers)
export CV_STATE_DIR=$T CV_QUIET=1
cleanup() {
    set +e
    stop_pids "$T" 20 worker
    stop_redis "$T/predis"
    bench_cleanup
}
trap cleanup EXIT
bench_stack
bench_wrk_scripts
PRP=$(free_port 1)
start_redis "$T/predis" "$PRP"
# the peers' Redis: start_redis's settings, persistence off unless PEERS_PERSIST=aof, and
# the eviction policy BullMQ asks for (with maxmemory 0, as here, Redis evicts nothing either
# way)
[ "$PERSIST" = aof ] || redis-cli -p "$PRP" CONFIG SET appendonly no >/dev/null
redis-cli -p "$PRP" CONFIG SET maxmemory-policy noeviction >/dev/null
export PEERS_REDIS_URL=redis://127.0.0.1:$PRP PEERS_PG_DSN=$CONVEYOR_PG_DSN
pflush() { redis-cli -p "$PRP" FLUSHALL >/dev/null; }
METER=("$PY" "$PEERDIR/meter.py")    # a command, not a function: timed_drain kills it
num() { awk '{print $2; exit}'; }                  # the value of a "name value unit" line
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# ---- what runs ----------------------------------------------------------------------------
redis_settings() {
    local k
    for k in appendonly appendfsync save maxmemory maxmemory-policy; do
        redis-cli -p "$1" CONFIG GET "$k" | paste -sd= -
    done
}
conveyor_sha=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || conveyor_sha="$conveyor_sha+changes"
echo "Conveyor peers bench: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:  $CORES cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)," \
    "$(awk '/^MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo)," \
    "Linux $(uname -r)"
echo "versions: Conveyor $conveyor_sha;" \
    "redis-server $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/');" \
    "PostgreSQL $(psql_q 'SHOW server_version' | awk '{print $1}');" \
    "BullMQ $(node -p "require('bullmq/package.json').version")" \
    "(ioredis $(node -p "require('ioredis/package.json').version")," \
    "pg $(node -p "require('pg/package.json').version"), Node.js $(node --version));" \
    "$("$PY" -c 'import celery, kombu, redis, psycopg2, platform
print("Celery %s (kombu %s, redis-py %s, psycopg2 %s), Python %s" % (celery.__version__,
      kombu.__version__, redis.__version__, psycopg2.__version__.split()[0],
      platform.python_version()))')"
echo "settings: Conveyor's Redis $(redis_settings "$RP" | paste -sd' ' -);" \
    "the peers' Redis $(redis_settings "$PRP" | paste -sd' ' -);" \
    "PostgreSQL $(psql_q 'SHOW fsync' | sed 's/^/fsync=/')" \
    "$(psql_q 'SHOW synchronous_commit' | sed 's/^/synchronous_commit=/')"
echo "          runs=$RUNS jobs=$N activations=$ACT latency=$LAT_N jobs at $RATE/s" \
    "wrk=${SECS}s; Conveyor workers --concurrency 500 (noop), 128 (activation), 64" \
    "(latency); BullMQ Worker concurrency $CONC (noop), $ACT_CONC (activation), job options" \
    "left at their defaults; Celery worker --pool=$POOL --concurrency $CELERY_CONC" \
    "($ACT_CONC for activation) --without-gossip --without-mingle --without-heartbeat," \
    "no result backend"
echo "          Conveyor submits through its HTTP API (wrk, cvbench latency), the peers" \
    "straight to Redis with their client libraries; a peer's activation is one PostgreSQL" \
    "transaction and one HSET per job without Conveyor's HTTP call to the activation system"

# ---- recording ----------------------------------------------------------------------------
RES=$T/results
: >"$RES"
declare -A UNIT=(
    [submit_one]=jobs/s [submit_bulk]=jobs/s [drain_1]=jobs/s [drain_2]=jobs/s
    [redis_us_per_job_1]=us [redis_us_per_job_2]=us [rss_noop_1]=MB [rss_noop_2]=MB
    [activation_2]=jobs/s [rss_activation]=MB [latency_rate]=jobs/s [latency_p50]=ms
    [latency_p99]=ms
)
ORDER=(submit_one submit_bulk drain_1 redis_us_per_job_1 rss_noop_1 drain_2
    redis_us_per_job_2 rss_noop_2 activation_2 rss_activation latency_rate latency_p50
    latency_p99)
ROUND=0
record() { # FIGURE SYSTEM VALUE
    # a drain over in one poll gives inf: PEERS_N too small for that system
    if ! [[ "$3" =~ ^[0-9.]+$ ]]; then
        echo "peers: $1 of $2 is '$3' (PEERS_N too small?)" >&2
        return 1
    fi
    echo "$1 $2 $3" >>"$RES"
    printf '  round %s/%s  %-20s %-9s %12s %s\n' "$ROUND" "$RUNS" "$1" "$2" "$3" "${UNIT[$1]}"
}

# ---- Conveyor ---------------------------------------------------------------------------
conveyor_submit_one() {
    flush
    record submit_one conveyor "$(wrk_rate "$T/post.lua" "$API/v1/jobs/noop" 64)"
}
conveyor_submit_bulk() {
    local r
    flush
    r=$(wrk_rate "$T/batch.lua" "$API/v1/jobs/noop/batch" 4)
    record submit_bulk conveyor "$((r * 1000))"
}
conveyor_drain() { # WORKERS
    local out c0 c1
    flush
    "$CVB" fill noop "$N" >/dev/null
    c0=$(redis_cpu_us)
    out=$(drain "$1" noop "$N" 500)
    c1=$(redis_cpu_us)
    record "drain_$1" conveyor "${out% *}"
    record "redis_us_per_job_$1" conveyor "$(per_job "$c0" "$c1" "$N")"
    record "rss_noop_$1" conveyor "$(mb "${out#* }")"
}
conveyor_activation() {
    local out
    flush
    psql_q "TRUNCATE transactions, user_offers; UPDATE accounts SET balance = 100000000"
    "$CVB" fill activation "$ACT" >/dev/null
    out=$(drain 2 activation "$ACT" 128)
    check_activations
    record activation_2 conveyor "${out% *}"
    record rss_activation conveyor "$(mb "${out#* }")"
}
conveyor_latency() {
    local out
    flush
    start_bg worker1 "$T/worker1.log" "$BIN/conveyor-worker" --types noop --concurrency 64
    start_bg worker2 "$T/worker2.log" "$BIN/conveyor-worker" --types noop --concurrency 64
    out=$("$CVB" latency "$API" "$KEY" "$LAT_N" "$RATE")
    stop_pids "$T" 20 worker
    record latency_rate conveyor "$(awk '$1 == "submit_rate" {print $2}' <<<"$out")"
    record latency_p50 conveyor "$(awk '$1 == "submit_to_done_p50" {print $2}' <<<"$out")"
    record latency_p99 conveyor "$(awk '$1 == "submit_to_done_p99" {print $2}' <<<"$out")"
}

check_activations() {
    local ok
    ok=$(psql_q "SELECT count(*) FROM transactions WHERE status='SUCCESS'")
    [ "$ok" = "$ACT" ] || { echo "peers: only $ok of $ACT activations succeeded" >&2; return 1; }
}

# ---- the peers ----------------------------------------------------------------------------
# peer_cmd SYSTEM ARGS...: the producer side of SYSTEM (bullmq_peer.js, celery_peer.py)
peer_cmd() {
    case $1 in
    bullmq) shift; node "$PEERDIR/bullmq_peer.js" "$@" ;;
    celery) shift; "$PY" "$PEERDIR/celery_peer.py" "$@" ;;
    esac
}
# peer_worker SYSTEM TYPE CONCURRENCY I: worker process number I (start_bg "workerI")
peer_worker() {
    case $1 in
    bullmq) start_bg "worker$4" "$T/worker$4.log" \
        node "$PEERDIR/bullmq_peer.js" work "$2" "$3" ;;
    celery) start_bg "worker$4" "$T/worker$4.log" \
        "$PY" -m celery -A celery_peer worker --pool "$POOL" --concurrency "$3" \
        --without-gossip --without-mingle --without-heartbeat --loglevel WARNING \
        -n "w$4@%h" ;;
    esac
}
# How many calls each producer keeps in flight: BullMQ's are promises on one connection (as
# wrk's 64 and 4 connections for Conveyor); Celery's apply_async blocks, and more threads
# publishing were slower (see celery_peer.py), so one.
declare -A ONE_CONC=([bullmq]=64 [celery]=1) BULK_CONC=([bullmq]=4 [celery]=1)
# peer_fill SYSTEM TYPE N: N jobs queued in bulk, not timed
peer_fill() { peer_cmd "$1" bulk "$2" "$3" "${BULK_CONC[$1]}" >/dev/null; }

peer_submit_one() {
    pflush
    record submit_one "$1" "$(peer_cmd "$1" one "$N" "${ONE_CONC[$1]}" | num)"
}
peer_submit_bulk() {
    pflush
    record submit_bulk "$1" "$(peer_cmd "$1" bulk noop "$N" "${BULK_CONC[$1]}" | num)"
}
peer_drain() { # SYSTEM WORKERS
    local out c0 c1
    pflush
    peer_fill "$1" noop "$N"
    c0=$(redis_cpu_us "$T/predis")
    out=$(timed_drain "$2" peer_worker "$1" noop "${NOOP_CONC[$1]}" -- \
        "${METER[@]}" wait "$N" 600)
    c1=$(redis_cpu_us "$T/predis")
    record "drain_$2" "$1" "${out% *}"
    record "redis_us_per_job_$2" "$1" "$(per_job "$c0" "$c1" "$N")"
    record "rss_noop_$2" "$1" "$(mb "${out#* }")"
}
peer_activation() { # SYSTEM
    local out
    pflush
    psql_q "TRUNCATE transactions, user_offers; UPDATE accounts SET balance = 100000000"
    peer_fill "$1" activation "$ACT"
    out=$(timed_drain 2 peer_worker "$1" activation "$ACT_CONC" -- "${METER[@]}" wait "$ACT" 600)
    check_activations
    record activation_2 "$1" "${out% *}"
    record rss_activation "$1" "$(mb "${out#* }")"
}
peer_latency() { # SYSTEM
    local out rate
    pflush
    peer_worker "$1" noop "${NOOP_CONC[$1]}" 1
    peer_worker "$1" noop "${NOOP_CONC[$1]}" 2
    # the workers' start (seconds for Celery) is no job's latency: 100 jobs first
    peer_fill "$1" noop 100
    "${METER[@]}" settle 100 60
    rate=$(peer_cmd "$1" latency "$LAT_N" "$RATE" | num)
    out=$("${METER[@]}" latency "$LAT_N" 60)
    stop_pids "$T" 20 worker
    record latency_rate "$1" "$rate"
    record latency_p50 "$1" "$(awk '$1 == "submit_to_done_p50" {print $2}' <<<"$out")"
    record latency_p99 "$1" "$(awk '$1 == "submit_to_done_p99" {print $2}' <<<"$out")"
}

# ---- the rounds -------------------------------------------------------------------------
# one SYSTEM WORKLOAD [ARG]: one run in a subshell of its own, so that a failed run is
# reported, its workers stopped, and the other runs go on
FAILED=0
one() {
    local sys=$1 w=$2 rc
    shift 2
    set +e
    (
        set -e
        if [ "$sys" = conveyor ]; then "conveyor_$w" "$@"; else "peer_$w" "$sys" "$@"; fi
    )
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "peers: round $ROUND of $w $* for $sys failed (logs: BENCH_KEEP=1)" >&2
        FAILED=$((FAILED + 1))
        stop_pids "$T" 20 worker
    fi
}
for wl in "${WORKLOADS[@]}"; do
    echo "$wl:"
    for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
        for sys in conveyor "${PEERS[@]}"; do
            # shellcheck disable=SC2086
            one "$sys" $wl
        done
    done
done

# ---- summary ----------------------------------------------------------------------------
# stats: "median min max count" of the values on stdin (sorted here)
stats() {
    sort -g | awk '{v[NR] = $1} END {
        if (NR == 0) { print "- - - 0"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%s %s %s %d\n", m, v[1], v[NR], NR }'
}
echo
echo "Summary: median of the runs, min..max, and Conveyor's median / the peer's (rates:" \
    "above 1 Conveyor is faster; ms, MB and us per job: below 1 Conveyor needs less)"
printf '%-20s %-9s %12s %-24s %-7s %s\n' figure system median "min..max (runs)" unit \
    conveyor/peer
for f in "${ORDER[@]}"; do
    read -r cmed _ <<<"$(awk -v f="$f" '$1 == f && $2 == "conveyor" {print $3}' "$RES" | stats)"
    for sys in conveyor "${PEERS[@]}"; do
        read -r med lo hi cnt <<<"$(awk -v f="$f" -v s="$sys" '$1 == f && $2 == s {print $3}' \
            "$RES" | stats)"
        r=
        [ "$sys" = conveyor ] || [ "$cmed" = - ] || [ "$med" = - ] || r=$(ratio "$cmed" "$med")
        printf '%-20s %-9s %12s %-24s %-7s %s\n' "$f" "$sys" "$med" "$lo..$hi ($cnt)" \
            "${UNIT[$f]}" "$r"
    done
done
[ "$FAILED" -eq 0 ] || { echo "peers: $FAILED runs failed (see above)" >&2; exit 1; }
