#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup runs from a trap
# tests/chaos/run-chaos.sh - the crash-consistency kit (`make chaos`; a short run is part of
# `make test`).
#
# Everything runs on 127.0.0.1, on free ports, in a fresh temp dir: never the `make up` stack.
#   1. Start redis-server (AOF), PostgreSQL, migrate and seed, install tests/chaos/audit.sql
#      (ten poor accounts, a snapshot of the balances, an audit trail of every status and
#      balance change), start conveyor-sim (told by POST /admin/config to decline users
#      91..100 and to answer 5 % of the calls 503), conveyor-api and CHAOS_WORKERS workers.
#   2. `cv-chaos load` submits CHAOS_JOBS jobs through the API over HTTP, paced over
#      CHAOS_SECONDS: half activations (users 1..100, the seeded offers), half noop.
#      Meanwhile the order pipeline runs too (every worker runs every type): CHAOS_ORDERS
#      orders appear in the sim's Mirakl (a twentieth at the start, shipping to a postal code
#      every carrier refuses; the rest generated in batches every 2 s over the first 60 % of
#      the window, weights and countries cycling through every carrier rule); the fleet
#      fetches them every 2 s, and the loop below also POSTs
#      /api/v1/orchestrator/fetch-orders every 5 s (re-fetches must be harmless); TIPSA's
#      feed is polled every 2 s; the sim answers 5 % of every system's calls 503.
#   3. Meanwhile, every second: SIGKILL a random worker and start a replacement. Once each,
#      at 15 % of the window: SIGSTOP a worker for the visibility timeout + 3 s, then SIGCONT
#      it; at 40 %: SIGKILL redis-server, restart it from its AOF a second later; at 65 %:
#      `pg_ctl restart -m immediate`.
#   4. `cv-chaos check` waits until every acknowledged job is terminal (deadline
#      CHAOS_DRAIN_S), then checks the invariants and prints jobs, kills, restarts, lost,
#      duplicated, seconds to drain and PASS/FAIL per invariant (tests/chaos/chaos_check.c);
#      then it waits for the orders to settle, checks the pipeline's invariants, clears the
#      carriers' refusals, replays every dead and failed order job CHAOS_REPLAYS times
#      through POST /v1/dead/{id}/retry and checks them again (tests/chaos/chaos_orders.c).
#   5. Stop everything this script started, by PID, however it exits. A sanitizer report in
#      any log fails the run. The temp dir is removed on success, kept and named otherwise.
#
# Knobs (env): CHAOS_JOBS (10000), CHAOS_SECONDS (120), CHAOS_WORKERS (3), CHAOS_SEED (from
# the clock, printed: the same seed gives the same jobs and the same kill order, not the same
# timing), CHAOS_BIN (bin: the binaries under test), CHAOS_VISIBILITY_MS (5000),
# CHAOS_DRAIN_S (180), CHAOS_HELD_WAIT_S (30: how long held money may take to settle after
# the jobs ended), CHAOS_KEEP=1 (keep the temp dir), CHAOS_SELFTEST=1 (after the check,
# tests/chaos/selftest.sh plants defects one at a time and proves the check catches each;
# the exit status is then the self-test's), CHAOS_ORDERS (CHAOS_JOBS / 10, at most 10000;
# 0 = no orders), CHAOS_REPLAYS (2), CHAOS_BROKER (redis; kafka = the jobs go through
# librdkafka's mock cluster, conveyor-kmock, started here).
# Exit status: 0 every invariant holds, 1 one fails, 2 the kit could not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CV_ROOT=$ROOT   # read by scripts/lib.sh
export CV_ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

# Settings of the user's own stack (CONVEYOR_CONFIG, an exported var/stack.env) stay out.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^CONVEYOR_' || true)

JOBS=${CHAOS_JOBS:-10000}
WINDOW_S=${CHAOS_SECONDS:-120}
NWORKERS=${CHAOS_WORKERS:-3}
SEED=${CHAOS_SEED:-$(($(date +%s) % 1000000))}
VIS_MS=${CHAOS_VISIBILITY_MS:-5000}
DRAIN_S=${CHAOS_DRAIN_S:-180}
HELD_WAIT_S=${CHAOS_HELD_WAIT_S:-30}
BROKER=${CHAOS_BROKER:-redis}
ORDERS=${CHAOS_ORDERS:-$((JOBS / 10))}
[ "$ORDERS" -le 10000 ] || ORDERS=10000       # what the sim makes (and reports) at most
REPLAYS=${CHAOS_REPLAYS:-2}
ORDERS_REFUSED=$(((ORDERS + 19) / 20))
ORDERS_GEN=$((ORDERS - ORDERS_REFUSED))
ORDER_CHUNKS=$((WINDOW_S * 60 / 100 / 2))    # one batch every 2 s over 60 % of the window
BIN=${CHAOS_BIN:-bin}
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
TOOL=$ROOT/build/san/tests/cv-chaos
CONCURRENCY=32
TYPES=activation,noop,order-fetch,carrier-post,tracking-event,tracking-poll,tracking-push
FETCH_EVERY_S=5      # an explicit POST /api/v1/orchestrator/fetch-orders this often
DECLINE_USERS=$(seq -s, 91 100)

for v in JOBS WINDOW_S NWORKERS SEED VIS_MS DRAIN_S HELD_WAIT_S ORDERS REPLAYS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { cv_err "$v must be a whole number, not '${!v}'"; exit 2; }
done
if [ "$JOBS" -lt 1 ] || [ "$WINDOW_S" -lt 10 ] || [ "$NWORKERS" -lt 2 ]; then
    cv_err "need CHAOS_JOBS >= 1, CHAOS_SECONDS >= 10, CHAOS_WORKERS >= 2"
    exit 2
fi
for f in "$TOOL" "$BIN/conveyorctl" "$BIN/conveyor-api" "$BIN/conveyor-worker" \
    "$BIN/conveyor-sim"; do
    [ -x "$f" ] || { cv_err "missing $f: run 'make all build/san/tests/cv-chaos' first"; exit 2; }
done

T=$(scratch_dir conveyor-chaos)
LOG=$T/log
mkdir -p "$LOG"
export CV_STATE_DIR=$T
status=2 checked=0 LOADER='' STOPPED=''
KILLS=0 STOPS=0 R_REDIS=0 R_PG=0 STARTED=0 EXITED=0
WPIDS=() WNAMES=() NEXT_W=0 OUTAGES=() FETCHES=()

say() { printf 'chaos: %s\n' "$*"; }
die() { cv_err "$*"; exit 2; }

cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ -n "$LOADER" ] && proc_alive "$LOADER"; then
        kill -TERM "$LOADER" 2>/dev/null
        wait_gone 5 "$LOADER" || kill -KILL "$LOADER" 2>/dev/null
    fi
    # a stopped worker acts on SIGTERM only once it runs again
    [ -z "$STOPPED" ] || kill -CONT "$STOPPED" 2>/dev/null
    # an outage in flight ends by itself (bounded); a PostgreSQL restart it made may have
    # left a postmaster that pg.pid does not name yet
    local p
    for p in "${OUTAGES[@]}"; do wait_gone 70 "$p" || kill -KILL "$p" 2>/dev/null; done
    [ ! -s "$T/pg/postmaster.pid" ] || record_pid "$T/pg.pid" "$(head -n 1 "$T/pg/postmaster.pid")"
    CV_QUIET=1 stop_pids "$T" 20 worker api sim
    [ "$BROKER" != kafka ] || CV_QUIET=1 stop_kmock "$T/kmock"
    CV_QUIET=1 stop_pg "$T"
    CV_QUIET=1 stop_redis "$T/redis"
    if [ "$checked" = 1 ]; then
        local bad n
        n=$(find "$LOG" -name '*.log' | wc -l)
        bad=$(grep -lE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' \
            "$LOG"/*.log 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
        if [ -n "$bad" ]; then
            echo "FAIL  no sanitizer report in any log: reports in $bad"
            status=1
        else
            echo "PASS  no sanitizer report in any log ($n logs)"
        fi
    fi
    local what=""
    [ "${CHAOS_SELFTEST:-0}" != 1 ] || what="self-test "
    if [ "$status" -eq 0 ]; then
        say "${what}PASS (seed $SEED)"
        if [ "${CHAOS_KEEP:-0}" = 1 ]; then say "files kept in $T"; else rm -rf "$T"; fi
    else
        say "${what}FAIL (status $status, seed $SEED); logs kept in $T"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit' INT
trap 'status=143; exit' TERM

# ---- the stack --------------------------------------------------------------------------

sql() { psql "$CONVEYOR_PG_DSN" -XtAq -v ON_ERROR_STOP=1 "$@"; }

start_stack() {
    local port try key w sys
    REDIS_PORT=$(start_on_free_port start_redis "$T/redis") || die "redis did not start"
    PG_PORT=$(start_on_free_port start_pg "$T") || die "postgres did not start"
    export CONVEYOR_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
    export CONVEYOR_PG_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/conveyor
    export CONVEYOR_MIGRATIONS=$ROOT/migrations
    export CONVEYOR_LOG_LEVEL=info
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
    if [ "$BROKER" = kafka ]; then
        # the jobs on Kafka (librdkafka's mock cluster); status and state stay in Redis/PG
        export CONVEYOR_BROKER_TRANSPORT=kafka CONVEYOR_KAFKA_SESSION_TIMEOUT_MS=6000
        CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=$(CV_QUIET=1 start_kmock "$T/kmock" "$BIN/conveyor-kmock") ||
            die "the kafka mock cluster did not start"
        export CONVEYOR_KAFKA_BOOTSTRAP_SERVERS
    fi
    for step in migrate seed; do
        "$BIN/conveyorctl" "$step" >>"$LOG/conveyorctl.log" 2>&1 ||
            { log_tail "$LOG/conveyorctl.log"; die "conveyorctl $step failed"; }
    done
    sql -f "$ROOT/tests/chaos/audit.sql" >>"$LOG/audit.log" 2>&1 ||
        { log_tail "$LOG/audit.log"; die "installing tests/chaos/audit.sql failed"; }
    USERS=$(sql -c 'SELECT max(user_id) FROM accounts')
    OFFERS=$(sql -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM offers")

    key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    export CHAOS_API_KEY=$key
    CONVEYOR_API_KEYS="chaos:$(printf '%s' "$key" | sha256sum | cut -d' ' -f1):*"
    export CONVEYOR_API_KEYS
    # The carriers' webhook budgets (1000 an hour each by default) out of the way: a thousand
    # orders send more, and the kit judges effects, not throttling.
    for c in CORREOS_EXPRESS ONTIME SEUR TIPSA; do
        export "CONVEYOR_UPSTREAMS_${c}_WEBHOOK_RATE_PER_HOUR=100000000"
    done
    # The simulator sends its carriers' webhooks to the API, which starts after it: the API's
    # port is chosen first (a retry starts both again on a new one).
    for try in 1 2 3; do
        port=$(free_port 1)
        rm -f "$T/sim.port"
        export CONVEYOR_SIM_WEBHOOK_URL=http://127.0.0.1:$port
        start_bg sim "$LOG/sim.log" "$BIN/conveyor-sim" --port 0 --port-file "$T/sim.port" || die "conveyor-sim did not start"
        for ((w = 0; w < 100; w++)); do
            [ -s "$T/sim.port" ] && break
            sleep 0.1
        done
        SIM_PORT=$(cat "$T/sim.port" 2>/dev/null || true)
        SIM_URL=http://127.0.0.1:$SIM_PORT
        wait_http "$SIM_URL/health" 20 || die "conveyor-sim does not answer"
        # the workers and the API reach every upstream on the sim's port (deploy/demo.env)
        pipeline_env "$SIM_PORT" "$port"
        if start_bg api "$LOG/api.log" "$BIN/conveyor-api" --port "$port" &&
            wait_http "http://127.0.0.1:$port/health" 20; then
            API_URL=http://127.0.0.1:$port
            break
        fi
        CV_QUIET=1 stop_pids "$T" 5 api sim
        unset CONVEYOR_SIM_WEBHOOK_URL
        while read -r v; do unset "$v"; done < <(compgen -e | grep '^CONVEYOR_UPSTREAMS_.*_URL$')
    done
    [ -n "${API_URL:-}" ] || die "conveyor-api did not start"
    curl -fsS -o /dev/null -X POST "$SIM_URL/admin/config" -H 'Content-Type: application/json' \
        -d "{\"decline_users\":[$DECLINE_USERS],\"error_rate\":0.05,\"error_status\":503}" ||
        die "POST $SIM_URL/admin/config failed"
    # the order pipeline's systems answer 5 % of the calls 503 too
    for sys in mirakl tipsa seur cex ontime; do
        curl -fsS -o /dev/null -X POST "$SIM_URL/admin/$sys/faults" \
            -H 'Content-Type: application/json' -d '{"error_rate":0.05,"error_status":503}' ||
            die "POST $SIM_URL/admin/$sys/faults failed"
    done
    if [ "$ORDERS" -gt 0 ]; then
        # A twentieth of the orders ship to a postal code every carrier refuses until the
        # check's replays (which clear the list first): FAILED_POST orders that a replay
        # must complete through the retry edge, with one shipment still. Weights and
        # countries cycle through every carrier rule.
        local refused='' i w
        for ((i = 0; i < ORDERS_REFUSED; i++)); do
            case $((i % 4)) in
            0) w='"weight":0.5,"country_iso_code":"ES","zip_code":"00000"' ;;
            1) w='"weight":3,"country_iso_code":"ES","zip_code":"00000"' ;;
            2) w='"weight":12,"country_iso_code":"ES","zip_code":"00000"' ;;
            *) w='"weight":2,"country_iso_code":"PT","zip_code":"0000-000"' ;;
            esac
            refused+="${refused:+,}{$w}"
        done
        curl -fsS -X POST "$SIM_URL/admin/mirakl/orders" -H 'Content-Type: application/json' \
            -d "{\"orders\":[$refused]}" >>"$T/made" || die "POST $SIM_URL/admin/mirakl/orders failed"
        echo >>"$T/made"
        for sys in tipsa seur cex ontime; do
            curl -fsS -o /dev/null -X POST "$SIM_URL/admin/$sys/faults" \
                -H 'Content-Type: application/json' -d '{"fail_keys":["00000","0000-000"]}' ||
                die "POST $SIM_URL/admin/$sys/faults failed"
        done
        make_orders 0
    fi

    export CONVEYOR_ACTIVATION_URL=$SIM_URL
    # The order pipeline: fetched every 2 s across the fleet (and on POST fetch-orders from
    # the loop below), TIPSA's feed polled every 2 s, short backoffs so that the drain fits,
    # Mirakl's budget out of the way (the carriers' webhook budgets are, before the API
    # starts): the kit judges effects, not throttling.
    export CONVEYOR_JOBS_TYPES_ORDER_FETCH_EVERY_S=2 CONVEYOR_JOBS_TYPES_TRACKING_POLL_EVERY_S=2
    for t in ORDER_FETCH CARRIER_POST TRACKING_EVENT TRACKING_POLL TRACKING_PUSH; do
        export "CONVEYOR_JOBS_TYPES_${t}_RETRY_BASE_MS=200" "CONVEYOR_JOBS_TYPES_${t}_RETRY_MAX_MS=2000"
    done
    export CONVEYOR_UPSTREAMS_MIRAKL_RATE_PER_MIN=100000
    export CONVEYOR_VISIBILITY_TIMEOUT_MS=$VIS_MS CONVEYOR_RECLAIM_INTERVAL_MS=1000
    # held money is looked at after 5 s, every second: the check waits CHAOS_HELD_WAIT_S
    export CONVEYOR_RECONCILE_HELD_AFTER_S=5 CONVEYOR_RECONCILE_INTERVAL_MS=1000
    top_up
    [ ${#WPIDS[@]} -eq "$NWORKERS" ] || die "the workers did not start"
}

# make_orders CHUNK: the CHUNK-th batch of generated orders in the sim's Mirakl (its ids
# appended to $T/made). The batches are spread over ORDER_CHUNKS ticks of 2 s from the start,
# so that orders flow through the pipeline while the kit kills and restarts things.
make_orders() {
    local k=$1 n=$((ORDERS_GEN / ORDER_CHUNKS))
    [ "$k" -ne $((ORDER_CHUNKS - 1)) ] || n=$((ORDERS_GEN - n * (ORDER_CHUNKS - 1)))
    [ "$n" -gt 0 ] || return 0
    curl -sS --max-time 10 -X POST "$SIM_URL/admin/mirakl/orders" \
        -H 'Content-Type: application/json' \
        -d "{\"generate\":$n,\"seed\":$((SEED * 1000 + k + 1))}" >>"$T/made" 2>>"$LOG/chaos.log"
    echo >>"$T/made"
}

# ---- the workers ------------------------------------------------------------------------
# This part runs once a second on a busy machine, so it forks as little as possible: bash
# builtins read /proc, tell the time and write the log; a worker start is one fork.

# NOW := milliseconds since the epoch (a variable, not $(...): that would fork).
tick_now() {
    local t=${EPOCHREALTIME/./}
    NOW=$((t / 1000))
}
note() { printf '%(%T)T %s\n' -1 "$*" >>"$LOG/chaos.log"; }

# alive PID: the process exists and is not a zombie (no fork, unlike proc_alive).
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# A worker in its own session (setsid execs it: $! is the worker itself), recorded in
# $T/pids/ like start_bg does, so that cleanup's stop_pids stops it.
start_worker() {
    local name pid stat f
    NEXT_W=$((NEXT_W + 1))
    name=worker-$NEXT_W
    (exec setsid "$BIN/conveyor-worker" --types "$TYPES" --concurrency "$CONCURRENCY" \
        >>"$LOG/$name.log" 2>&1 </dev/null) &
    pid=$!
    disown "$pid" 2>/dev/null || true
    STARTED=$((STARTED + 1))
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || stat=
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    printf '%s\n%s\n' "$pid" "${f[19]:-}" >"$T/pids/$name.pid"
    WPIDS+=("$pid")
    WNAMES+=("$name")
}

# Forget workers that are gone; those we did not kill exited by themselves (say, started
# while PostgreSQL was restarting: a worker refuses to start without it).
prune_workers() {
    local i pids=() names=()
    for i in "${!WPIDS[@]}"; do
        if alive "${WPIDS[$i]}"; then
            pids+=("${WPIDS[$i]}")
            names+=("${WNAMES[$i]}")
        else
            EXITED=$((EXITED + 1))
            note "${WNAMES[$i]} (pid ${WPIDS[$i]}) exited by itself"
            rm -f "$T/pids/${WNAMES[$i]}.pid"
        fi
    done
    WPIDS=("${pids[@]}")
    WNAMES=("${names[@]}")
}

top_up() {
    while [ ${#WPIDS[@]} -lt "$NWORKERS" ]; do start_worker; done
}

# PICK := a random worker index, never the stopped one; empty when there is none. (Not a
# $(...) helper: a subshell's $RANDOM would not advance this shell's seeded sequence.)
pick_worker() {
    local i cand=()
    PICK=''
    for i in "${!WPIDS[@]}"; do
        [ "${WPIDS[$i]}" = "$STOPPED" ] || cand+=("$i")
    done
    [ ${#cand[@]} -eq 0 ] || PICK=${cand[$((RANDOM % ${#cand[@]}))]}
}

kill_worker() {
    local i pids=() names=() k
    pick_worker
    i=$PICK
    [ -n "$i" ] || return 0
    kill -KILL -- "-${WPIDS[$i]}" 2>/dev/null || kill -KILL "${WPIDS[$i]}" 2>/dev/null || true
    KILLS=$((KILLS + 1))
    note "SIGKILL ${WNAMES[$i]} (pid ${WPIDS[$i]})"
    rm -f "$T/pids/${WNAMES[$i]}.pid"
    for k in "${!WPIDS[@]}"; do
        [ "$k" = "$i" ] && continue
        pids+=("${WPIDS[$k]}")
        names+=("${WNAMES[$k]}")
    done
    WPIDS=("${pids[@]}")
    WNAMES=("${names[@]}")
}

# ---- the outages --------------------------------------------------------------------------
# The Redis and PostgreSQL outages run in the background (their pids in OUTAGES) so that the
# worker kills go on meanwhile; their figures come back through files.

stop_a_worker() { # ELAPSED_S
    local i
    pick_worker
    i=$PICK
    [ -n "$i" ] || return 0
    STOPPED=${WPIDS[$i]}
    kill -STOP "$STOPPED"
    STOPS=$((STOPS + 1))
    say "t=${1}s SIGSTOP ${WNAMES[$i]} (pid $STOPPED) for ${HOLD_S}s" \
        "(visibility timeout ${VIS_MS} ms)"
}

resume_worker() { # ELAPSED_S
    kill -CONT "$STOPPED" 2>/dev/null || true
    say "t=${1}s SIGCONT pid $STOPPED"
    STOPPED=''
}

crash_redis() { # ELAPSED_S  (in a background subshell)
    local pid
    pid=$(pidfile_pid "$T/redis/redis.pid") || die "redis-server is not running"
    kill -KILL "$pid"
    wait_gone 10 "$pid" || die "redis-server (pid $pid) survived SIGKILL"
    rm -f "$T/redis/redis.pid"
    sleep 1
    CV_QUIET=1 start_redis "$T/redis" "$REDIS_PORT" >>"$LOG/chaos.log" 2>&1 ||
        die "redis-server did not restart from its AOF on port $REDIS_PORT"
    touch "$T/restarted.redis"
    say "t=${1}s SIGKILL redis-server (pid $pid), restarted from its AOF 1 s later" \
        "(pid $(pidfile_pid "$T/redis/redis.pid"))"
}

crash_pg() { # ELAPSED_S  (in a background subshell)
    local pid t0
    tick_now
    t0=$NOW
    # no -l: the restarted server writes to the log descriptor opened here, as start_pg's
    # does (user postgres may not be able to open the file itself)
    as_pg "$(pg_bindir)/pg_ctl" -D "$T/pg" -m immediate -w -t 60 restart \
        >>"$T/pg.log" 2>&1 </dev/null || die "pg_ctl restart -m immediate failed (see $T/pg.log)"
    pid=$(head -n 1 "$T/pg/postmaster.pid")
    record_pid "$T/pg.pid" "$pid"
    touch "$T/restarted.pg"
    tick_now
    say "t=${1}s pg_ctl restart -m immediate: back after $((NOW - t0)) ms (pid $pid)"
}

# outages_done: true once no outage runs; dies when one failed.
outages_done() {
    local p rc left=()
    for p in "${OUTAGES[@]}"; do
        if alive "$p"; then
            left+=("$p")
        else
            rc=0
            wait "$p" || rc=$?
            [ "$rc" -eq 0 ] || die "an outage step failed (status $rc)"
        fi
    done
    OUTAGES=("${left[@]}")
    [ ${#OUTAGES[@]} -eq 0 ]
}

# ---- the run ----------------------------------------------------------------------------

RANDOM=$SEED
HOLD_S=$(((VIS_MS + 999) / 1000 + 3))
T_STOP=$((WINDOW_S * 15 / 100))
T_REDIS=$((WINDOW_S * 40 / 100))
T_PG=$((WINDOW_S * 65 / 100))

say "$JOBS jobs over ${WINDOW_S}s, $NWORKERS workers (concurrency $CONCURRENCY, visibility" \
    "timeout ${VIS_MS} ms), binaries in ${BIN#"$ROOT"/}, seed $SEED (CHAOS_SEED=$SEED repeats" \
    "the jobs and the kill order)"
say "files in $T"
start_stack
say "stack up: api $API_URL, sim $SIM_URL, redis :$REDIS_PORT, postgres :$PG_PORT"

"$TOOL" load --api "$API_URL" --jobs "$JOBS" --seconds "$WINDOW_S" --seed "$SEED" \
    --users "$USERS" --offers "$OFFERS" --out "$T/acked.tsv" >"$LOG/load.out" 2>"$LOG/load.log" &
LOADER=$!

tick_now
T0=$NOW
tick=0 stop_at=-1 done_stop=0 done_redis=0 done_pg=0
while :; do
    tick=$((tick + 1))
    tick_now
    wait_ms=$((T0 + tick * 1000 - NOW))
    if [ "$wait_ms" -gt 0 ]; then
        printf -v secs '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000))
        sleep "$secs"
    fi
    tick_now
    el=$(((NOW - T0) / 1000))
    prune_workers
    kill_worker
    top_up
    if [ $done_stop = 0 ] && [ "$el" -ge "$T_STOP" ]; then
        stop_a_worker "$el"
        done_stop=1 stop_at=$el
    fi
    if [ -n "$STOPPED" ] && [ "$el" -ge $((stop_at + HOLD_S)) ]; then resume_worker "$el"; fi
    if [ $done_redis = 0 ] && [ "$el" -ge "$T_REDIS" ]; then
        crash_redis "$el" &
        OUTAGES+=("$!")
        done_redis=1
    fi
    if [ $done_pg = 0 ] && [ "$el" -ge "$T_PG" ]; then
        crash_pg "$el" &
        OUTAGES+=("$!")
        done_pg=1
    fi
    if [ "$ORDERS" -gt 0 ] && ((tick % 2 == 0 && tick / 2 < ORDER_CHUNKS)); then
        make_orders $((tick / 2)) &
        FETCHES+=("$!")
    fi
    if [ "$ORDERS" -gt 0 ] && ((tick % FETCH_EVERY_S == 0)); then
        # re-fetches must be harmless: an explicit fetch on top of the schedule's
        curl -sS -o /dev/null -w '%{http_code}\n' --max-time 5 -X POST \
            -H "Authorization: Bearer $CHAOS_API_KEY" \
            "$API_URL/api/v1/orchestrator/fetch-orders" >>"$T/fetches" 2>>"$LOG/chaos.log" &
        FETCHES+=("$!")
    fi
    if ((tick % 10 == 0)); then
        n=0
        [ ! -r "$T/acked.tsv" ] || { mapfile -t acked <"$T/acked.tsv"; n=${#acked[@]}; }
        say "t=${el}s acknowledged $n of $JOBS, kills $KILLS, workers running ${#WPIDS[@]}"
    fi
    if outages_done && ! alive "$LOADER" && [ $done_pg = 1 ] && [ -z "$STOPPED" ]; then break; fi
done
[ ! -e "$T/restarted.redis" ] || R_REDIS=1
[ ! -e "$T/restarted.pg" ] || R_PG=1

# The chaos is over: a full set of running workers drains what is left.
for ((i = 0; i < 5; i++)); do
    prune_workers
    top_up
    sleep 1
    prune_workers
    [ ${#WPIDS[@]} -lt "$NWORKERS" ] || break
done
[ ${#WPIDS[@]} -eq "$NWORKERS" ] || die "cannot keep $NWORKERS workers running after the chaos"
set +e
wait "$LOADER"
load_rc=$?
set -e
LOADER=''
cat "$LOG/load.out"
[ "$load_rc" -eq 0 ] || { log_tail "$LOG/load.log"; die "cv-chaos load failed (status $load_rc)"; }
if [ "$ORDERS" -gt 0 ]; then
    for p in "${FETCHES[@]}"; do wait "$p" || true; done   # each bounded by --max-time
    made=$(grep -o '"[^"]*"' "$T/made" | grep -vc '"created"' || true)
    [ "$made" -eq "$ORDERS" ] || say "the sim made $made orders of $ORDERS (see $LOG/chaos.log)"
    ORDERS=$made
    say "POST /api/v1/orchestrator/fetch-orders: $(sort "$T/fetches" 2>/dev/null | uniq -c |
        awk '{printf "%s%s x HTTP %s", (NR > 1 ? ", " : ""), $1, $2}')"
fi
say "workers: $STARTED started, $KILLS SIGKILLed, $EXITED exited by themselves" \
    "(see $LOG/chaos.log); draining (deadline ${DRAIN_S}s)"

checked=1
set +e
"$TOOL" check --acked "$T/acked.tsv" --jobs "$JOBS" --sim "$SIM_URL" --drain-s "$DRAIN_S" \
    --held-wait-s "$HELD_WAIT_S" --kills "$KILLS" --stops "$STOPS" --redis-restarts "$R_REDIS" \
    --pg-restarts "$R_PG" --workers-started "$STARTED" --orders "$ORDERS" --api "$API_URL" \
    --replays "$REPLAYS" 2> >(tee "$LOG/check.log" >&2)
status=$?
set -e
[ "$status" -le 1 ] || status=2
if [ "${CHAOS_SELFTEST:-0}" = 1 ]; then
    # the self-test judges the checker, not the code under test: its status is the run's
    export T TOOL JOBS SIM_URL ORDERS
    if bash "$ROOT/tests/chaos/selftest.sh"; then status=0; else status=1; fi
fi
exit "$status"
