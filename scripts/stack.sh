#!/usr/bin/env bash
# scripts/stack.sh {up|down|run|status|destroy} - the whole Conveyor stack on this machine.
#
#   up      redis (AOF) + PostgreSQL + migrate/seed + conveyor-sim + conveyor-api + 2 workers,
#           all on 127.0.0.1, state and data under var/, logs in var/log/. Idempotent. As
#           root, when user postgres cannot enter the checkout (under /root, or a `mktemp -d`
#           dir: both 0700), the PostgreSQL data lives in /var/lib/conveyor/<hash>/pg instead
#           (see start_pg in scripts/lib.sh); the summary says where.
#   down    stop everything up started (workers, api, sim, then postgres, redis); keeps the data.
#   destroy down, then delete var/ and the PostgreSQL data directory.
#   run     up, submit a demo batch (activations + 1000 noop jobs), show progress until every
#           activation is SUCCESS or FAILED, print the outcome, then wait for Ctrl-C and go down.
#   status  what runs, on which port.
#
# After `up`, `. var/stack.env` gives CONVEYOR_API_URL, CONVEYOR_API_KEY (a demo key allowed
# every job type), CONVEYOR_PG_DSN, CONVEYOR_REDIS_URL and CONVEYOR_SIM_URL.
#
# STACK_BROKER=kafka (`make up BROKER=kafka`, `make run BROKER=kafka`): the jobs go through
# Kafka instead of Redis Streams: librdkafka's mock cluster (bin/conveyor-kmock, 3 brokers on
# random ports, the <prefix>.<type> topics; log var/kmock/kmock.log) starts beside Redis and
# PostgreSQL, which still hold job status, idempotency keys and state, and the API and
# workers run with CONVEYOR_BROKER_TRANSPORT=kafka, CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=<its
# list> and CONVEYOR_KAFKA_SESSION_TIMEOUT_MS=6000 (the mock wants >= 3500; stack.env has
# them too). The cluster is in memory: `down` loses the jobs it held. A stack that runs with
# one broker must go down before it comes up with the other. Default: redis.
#
# Knobs (env): STACK_BROKER (redis), STACK_WORKERS (2), STACK_CONCURRENCY (32),
# STACK_ACTIVATIONS (200), STACK_NOOPS (1000), STACK_RUN_DEADLINE_S (180),
# STACK_KMOCK_PARTITIONS (8), CONVEYOR_LOG_LEVEL (info).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

VAR=$ROOT/var
LOG=$VAR/log
BIN=$ROOT/bin
export CV_STATE_DIR=$VAR
NWORKERS=${STACK_WORKERS:-2}
CONCURRENCY=${STACK_CONCURRENCY:-32}
WORKER_TYPES=${STACK_WORKER_TYPES:-activation,noop,order-fetch,carrier-post,tracking-event,tracking-poll,tracking-push,ml-notification}
BROKER=${STACK_BROKER:-redis}
KMOCK=$VAR/kmock

die() { cv_err "$*"; exit 1; }

need_bins() {
    local b missing=()
    case "$BROKER" in
    redis | kafka) ;;
    *) die "BROKER must be redis or kafka, not '$BROKER'" ;;
    esac
    for b in conveyorctl conveyor-sim conveyor-api conveyor-worker \
        $([ "$BROKER" = kafka ] && echo conveyor-kmock); do
        [ -x "$BIN/$b" ] || missing+=("bin/$b")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run 'make all' (or 'make up') first"
}

load_ports() {
    REDIS_PORT='' PG_PORT='' API_PORT='' SIM_PORT='' BROKER_UP=''
    # shellcheck disable=SC1091
    [ -r "$VAR/ports.env" ] && . "$VAR/ports.env"
    return 0
}

save_ports() {
    printf 'REDIS_PORT=%s\nPG_PORT=%s\nAPI_PORT=%s\nSIM_PORT=%s\nBROKER_UP=%s\n' \
        "$REDIS_PORT" "$PG_PORT" "$API_PORT" "$SIM_PORT" "$BROKER" >"$VAR/ports.env"
}

# choose SAVED DEFAULT: the port used last time, else the default, whichever is free first.
choose() {
    if [ -n "$1" ] && port_is_free "$1"; then echo "$1"; return; fi
    pick_port "$2"
}

redis_up() { pidfile_pid "$VAR/redis/redis.pid" >/dev/null; }
pg_up() { pidfile_pid "$VAR/pg.pid" >/dev/null; }
proc_up() { pidfile_pid "$VAR/pids/$1.pid" >/dev/null; }
# apps_up: true when the API or a worker runs (they hold the transport they started with).
apps_up() {
    local f
    for f in "$VAR"/pids/api.pid "$VAR"/pids/worker-*.pid; do
        pidfile_pid "$f" >/dev/null && return 0
    done
    return 1
}

# kafka_env: with BROKER=kafka, the transport and the mock cluster's address for every binary.
kafka_env() {
    [ "$BROKER" = kafka ] && [ -s "$KMOCK/kmock.bootstrap" ] || return 0
    export CONVEYOR_BROKER_TRANSPORT=kafka
    CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=$(cat "$KMOCK/kmock.bootstrap")
    export CONVEYOR_KAFKA_BOOTSTRAP_SERVERS
    # below 3500 ms a member of the mock's groups can hang in join (../shared/PLATFORM.md)
    export CONVEYOR_KAFKA_SESSION_TIMEOUT_MS=${CONVEYOR_KAFKA_SESSION_TIMEOUT_MS:-6000}
}

# Set the CONVEYOR_* variables every binary reads.
export_env() {
    export CONVEYOR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    export CONVEYOR_PG_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/conveyor"
    export CONVEYOR_HTTP_PORT=$API_PORT
    export CONVEYOR_SIM_PORT=$SIM_PORT
    export CONVEYOR_ACTIVATION_URL="http://127.0.0.1:$SIM_PORT"
    export CONVEYOR_LOG_LEVEL=${CONVEYOR_LOG_LEVEL:-info}
    pipeline_env "$SIM_PORT" "$API_PORT"
    # the order pipeline runs by itself: a fetch every 5 s (one per period, fleet-wide)
    export CONVEYOR_JOBS_TYPES_ORDER_FETCH_EVERY_S=${CONVEYOR_JOBS_TYPES_ORDER_FETCH_EVERY_S:-5}
    # TIPSA does not push: its change feed is read every 10 s
    export CONVEYOR_JOBS_TYPES_TRACKING_POLL_EVERY_S=${CONVEYOR_JOBS_TYPES_TRACKING_POLL_EVERY_S:-10}
    if [ -z "${CONVEYOR_CONFIG:-}" ] && [ -r "$ROOT/conveyor.cfg" ]; then
        export CONVEYOR_CONFIG=$ROOT/conveyor.cfg
    fi
    kafka_env
}

# The demo key: kept from an earlier stack.env, else 32 random hex digits.
demo_key() {
    local k=
    if [ -r "$VAR/stack.env" ]; then
        k=$(sed -n 's/^export CONVEYOR_API_KEY=//p' "$VAR/stack.env" | tr -d "'\"")
    fi
    if ! [[ "$k" =~ ^[0-9a-f]{32}$ ]]; then
        k=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    fi
    echo "$k"
}

key_sha() {
    local sha
    sha=$("$BIN/conveyorctl" hash-key "$1" 2>>"$LOG/conveyorctl.log" | tr -d ' \n') || sha=
    if ! [[ "$sha" =~ ^[0-9a-f]{64}$ ]]; then
        cv_err "conveyorctl hash-key gave no SHA-256; using sha256sum (see $LOG/conveyorctl.log)"
        sha=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)
    fi
    echo "$sha"
}

write_env() {
    local tmp=$VAR/stack.env.tmp
    (
        umask 077
        {
            echo "# Conveyor local stack ($(date -u +%FT%TZ)). Source it: . var/stack.env"
            echo "export CONVEYOR_API_URL=http://127.0.0.1:$API_PORT"
            echo "export CONVEYOR_API_KEY=$API_KEY"
            echo "export CONVEYOR_PG_DSN=$CONVEYOR_PG_DSN"
            echo "export CONVEYOR_REDIS_URL=$CONVEYOR_REDIS_URL"
            echo "export CONVEYOR_SIM_URL=http://127.0.0.1:$SIM_PORT"
            if [ "$BROKER" = kafka ]; then
                echo "export CONVEYOR_BROKER_TRANSPORT=kafka"
                echo "export CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=$CONVEYOR_KAFKA_BOOTSTRAP_SERVERS"
                echo "export CONVEYOR_KAFKA_SESSION_TIMEOUT_MS=$CONVEYOR_KAFKA_SESSION_TIMEOUT_MS"
            fi
        } >"$tmp"
    )
    chmod 600 "$tmp"
    mv -f "$tmp" "$VAR/stack.env"
}

# pg_where: the PostgreSQL data directory, relative to the checkout when it is var/pg.
pg_where() {
    local d
    d=$(pg_datadir "$VAR")
    echo "${d#"$ROOT"/}"
}

summary() { # HEADLINE
    cat <<EOF
conveyor: ${1:-stack is up}
  api      http://127.0.0.1:$API_PORT      (log var/log/api.log)
  ui       http://127.0.0.1:$API_PORT/ui   (the dashboard: log in with CONVEYOR_API_KEY)
  sim      http://127.0.0.1:$SIM_PORT      (log var/log/sim.log)
  workers  $NWORKERS x concurrency $CONCURRENCY   (logs var/log/worker-N.log)
  redis    127.0.0.1:$REDIS_PORT           (AOF in var/redis)
  postgres postgresql://postgres@127.0.0.1:$PG_PORT/conveyor   (data in $(pg_where))
$(kafka_summary)
  env      . var/stack.env   (CONVEYOR_API_URL, CONVEYOR_API_KEY, ...)
  stop     make down
EOF
}

kafka_summary() {
    if [ "$BROKER" = kafka ]; then
        echo "  broker   kafka: mock cluster $(cat "$KMOCK/kmock.bootstrap" 2>/dev/null)" \
            "  (log var/kmock/kmock.log; topics ${CONVEYOR_BROKER_TOPIC_PREFIX:-conveyor}.<type>)"
    else
        echo "  broker   redis streams"
    fi
}

ctl() {
    if ! "$BIN/conveyorctl" "$@" >>"$LOG/conveyorctl.log" 2>&1; then
        cv_err "conveyorctl $1 failed"
        log_tail "$LOG/conveyorctl.log"
        return 1
    fi
}

all_up() {
    local i
    redis_up && pg_up && proc_up sim && proc_up api || return 1
    [ "$BROKER" != kafka ] || proc_up kmock || return 1
    for ((i = 1; i <= NWORKERS; i++)); do proc_up "worker-$i" || return 1; done
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/health" 2>/dev/null
}

# up_steps: start whatever is not running. Every step is checked explicitly because callers
# run it in an `if`, where set -e does not apply.
up_steps() {
    local i
    if ! redis_up; then REDIS_PORT=$(choose "$REDIS_PORT" 6390) || return 1; fi
    if ! pg_up; then PG_PORT=$(choose "$PG_PORT" 5440) || return 1; fi
    if ! proc_up api; then API_PORT=$(choose "$API_PORT" 8080) || return 1; fi
    if ! proc_up sim; then SIM_PORT=$(choose "$SIM_PORT" 8090) || return 1; fi
    save_ports
    export_env

    start_redis "$VAR/redis" "$REDIS_PORT" "$LOG/redis.log" && go_on || return 1
    start_pg "$VAR" "$PG_PORT" "$LOG/postgres.log" && go_on || return 1
    if [ "$BROKER" = kafka ] && ! proc_up kmock; then
        # A new cluster is empty and on new ports: the API and workers of an old one (it
        # died) start again with the new address.
        stop_pids "$VAR" 20 worker api
        start_kmock "$KMOCK" "$BIN/conveyor-kmock" -p "${STACK_KMOCK_PARTITIONS:-8}" \
            -x "${CONVEYOR_BROKER_TOPIC_PREFIX:-conveyor}" >/dev/null && go_on || return 1
        kafka_env
    fi
    ctl migrate && go_on || return 1
    if [ ! -e "$VAR/.seeded" ]; then
        ctl seed && go_on || return 1
        touch "$VAR/.seeded"
    fi

    API_KEY=$(demo_key)
    CONVEYOR_API_KEYS="demo:$(key_sha "$API_KEY"):*"
    export CONVEYOR_API_KEYS
    write_env

    if ! proc_up sim; then
        rm -f "$VAR/sim.port"
        start_bg sim "$LOG/sim.log" "$BIN/conveyor-sim" --port "$SIM_PORT" \
            --port-file "$VAR/sim.port" && go_on || return 1
    fi
    if ! proc_up api; then
        start_bg api "$LOG/api.log" "$BIN/conveyor-api" --port "$API_PORT" && go_on || return 1
    fi
    for ((i = 1; i <= NWORKERS; i++)); do
        proc_up "worker-$i" && continue
        start_bg "worker-$i" "$LOG/worker-$i.log" "$BIN/conveyor-worker" \
            --types "$WORKER_TYPES" --concurrency "$CONCURRENCY" && go_on || return 1
    done
    wait_http "http://127.0.0.1:$SIM_PORT/health" 20 || { log_tail "$LOG/sim.log"; return 1; }
    wait_http "http://127.0.0.1:$API_PORT/health" 20 || { log_tail "$LOG/api.log"; return 1; }
    go_on || return 1
    for ((i = 1; i <= NWORKERS; i++)); do
        if ! proc_up "worker-$i"; then
            cv_err "worker-$i died"
            log_tail "$LOG/worker-$i.log"
            return 1
        fi
    done
}

cmd_up() {
    need_bins
    mkdir -p "$VAR" "$LOG" "$VAR/pids" "$KMOCK"
    load_ports
    if [ -n "$BROKER_UP" ] && [ "$BROKER_UP" != "$BROKER" ] && apps_up; then
        die "the stack runs with BROKER=$BROKER_UP: 'make down' first, then up with BROKER=$BROKER"
    fi
    if [ -r "$VAR/stack.env" ] && all_up; then
        export_env
        summary "already up"
        return 0
    fi
    if ! up_steps; then
        cv_err "up failed; stopping what it started (logs in var/log/)"
        trap '' INT TERM    # go down in order
        cmd_down >/dev/null 2>&1 || true
        exit 1
    fi
    summary
}

cmd_down() {
    mkdir -p "$VAR"
    # Workers get their grace period (worker.grace_ms, 10 s by default) to finish jobs.
    stop_pids "$VAR" 20 worker api sim
    stop_kmock "$KMOCK"
    stop_pg "$VAR"
    stop_redis "$VAR/redis"
    local where
    where=$(pg_where)
    if [[ "$where" == var/* ]]; then where=; else where=" and $where"; fi
    echo "conveyor: stack is down (data kept in var/$where)"
}

# cmd_destroy: down, then delete the stack's data: var/ and the PostgreSQL data directory,
# wherever it lives.
cmd_destroy() {
    cmd_down
    drop_pg "$VAR"
    rm -rf "$VAR"
    echo "conveyor: stack data deleted"
}

cmd_status() {
    local n pid port
    load_ports
    line() { printf '  %-9s %-8s %s\n' "$1" "$2" "$3"; }
    echo "conveyor: stack in $VAR (PostgreSQL data in $(pg_datadir "$VAR"))"
    if pid=$(pidfile_pid "$VAR/redis/redis.pid"); then
        line redis "pid $pid" "127.0.0.1:$REDIS_PORT"
    else line redis stopped ""; fi
    if pid=$(pidfile_pid "$VAR/pg.pid"); then
        line postgres "pid $pid" "127.0.0.1:$PG_PORT"
    else line postgres stopped ""; fi
    if pid=$(pidfile_pid "$VAR/pids/kmock.pid"); then
        line kafka "pid $pid" "mock cluster $(cat "$KMOCK/kmock.bootstrap" 2>/dev/null)"
    fi
    for n in sim api; do
        port=$SIM_PORT
        [ "$n" = api ] && port=$API_PORT
        if pid=$(pidfile_pid "$VAR/pids/$n.pid"); then
            if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null; then
                line "$n" "pid $pid" "http://127.0.0.1:$port (health ok)"
            else
                line "$n" "pid $pid" "http://127.0.0.1:$port (health FAILING)"
            fi
        else line "$n" stopped ""; fi
    done
    for f in "$VAR"/pids/worker-*.pid; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .pid)
        if pid=$(pidfile_pid "$f"); then line "$n" "pid $pid" ""; else line "$n" dead ""; fi
    done
}

# ---- run: a demo batch -------------------------------------------------------------------

sql() { psql "$CONVEYOR_PG_DSN" -XtAq -F ' ' -c "$1"; }

# Counts of transactions that reached SUCCESS or FAILED (all time).
terminal_count() {
    sql "SELECT count(*) FROM transactions WHERE status IN ('SUCCESS', 'FAILED')" 2>/dev/null
}

progress() { # DONE TOTAL LABEL
    local done=$1 total=$2 width=40 fill
    [ "$total" -gt 0 ] || total=1
    fill=$((done * width / total))
    [ "$fill" -le "$width" ] || fill=$width
    printf '\r  [%s%s] %d/%d %s ' "$(printf '%*s' "$fill" '' | tr ' ' '#')" \
        "$(printf '%*s' $((width - fill)) '')" "$done" "$total" "$3"
}

# txn_id_of JSON: the transaction id in an activation reply (transaction_id, txn_id or id).
txn_id_of() {
    sed -nE 's/.*"(transaction_id|txn_id|id)"[[:space:]]*:[[:space:]]*"?([^",}]*).*/\2/p' <<<"$1" |
        head -n 1
}

# post_activation USER OFFER OUT: POST one activation; body in OUT.body, HTTP code in OUT.code.
# shellcheck disable=SC2153  # CONVEYOR_API_KEY comes from var/stack.env
post_activation() {
    curl -sS --max-time 10 -o "$3.body" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $CONVEYOR_API_KEY" -H 'Content-Type: application/json' \
        --data "{\"user_id\":$1,\"offer_id\":$2}" "$CONVEYOR_API_URL/api/v1/activation/" \
        >"$3.code" 2>/dev/null || true
}

cmd_run() {
    local n_act=${STACK_ACTIVATIONS:-200} n_noop=${STACK_NOOPS:-1000}
    local deadline_s=${STACK_RUN_DEADLINE_S:-180} users offers base i u o code body
    local accepted=0 rejected=0 done=0 deadline out txns=()
    cmd_up
    # shellcheck disable=SC1091
    . "$VAR/stack.env"
    : "${CONVEYOR_API_KEY:?}" "${CONVEYOR_API_URL:?}"
    out=$VAR/run
    rm -rf "$out"
    mkdir -p "$out"

    read -r -a users <<<"$(sql 'SELECT user_id FROM accounts ORDER BY user_id LIMIT 100' \
        2>/dev/null | tr '\n' ' ')" || true
    [ ${#users[@]} -gt 0 ] || users=(1 2 3 4 5 6 7 8 9 10)
    read -r -a offers <<<"$(sql 'SELECT id FROM offers ORDER BY id LIMIT 20' 2>/dev/null |
        tr '\n' ' ')" || true
    [ ${#offers[@]} -gt 0 ] || offers=(1 2 3 4 5)
    base=$(terminal_count) || base=

    echo "conveyor: submitting $n_act activations (${#users[@]} users, ${#offers[@]} offers)"
    for ((i = 0; i < n_act && STOP == 0; i++)); do
        u=${users[i % ${#users[@]}]}
        o=${offers[(i / ${#users[@]}) % ${#offers[@]}]}
        post_activation "$u" "$o" "$out/act-$i" &
        if (((i + 1) % 16 == 0)); then
            wait || true    # a signal interrupts wait: the loop then sees STOP
            progress $((i + 1)) "$n_act" submitted
        fi
    done
    wait || true
    [ "$STOP" = 0 ] || { run_stop; return; }
    progress "$n_act" "$n_act" submitted
    echo
    for ((i = 0; i < n_act; i++)); do
        code=$(cat "$out/act-$i.code" 2>/dev/null) || code=000
        body=$(head -c 300 "$out/act-$i.body" 2>/dev/null) || body=
        if [[ "$code" == 2* ]]; then
            accepted=$((accepted + 1))
            txns+=("$(txn_id_of "$body")")
        else
            rejected=$((rejected + 1))
            [ "$rejected" -le 3 ] && echo "  rejected: HTTP $code $body"
        fi
    done
    echo "conveyor: activations accepted $accepted, rejected $rejected"

    printf '{}' >"$out/noop.json"
    for ((i = 1; i < n_noop; i++)); do printf ',{}'; done >>"$out/noop.json"
    { printf '['; cat "$out/noop.json"; printf ']'; } >"$out/noop-batch.json"
    code=$(curl -sS --max-time 30 -o "$out/noop-reply.json" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $CONVEYOR_API_KEY" -H 'Content-Type: application/json' \
        --data-binary "@$out/noop-batch.json" "$CONVEYOR_API_URL/v1/jobs/noop/batch") || code=000
    if [[ "$code" == 2* ]]; then
        grep -oE '"[0-9a-f]{8}-[0-9a-f-]{27}"' "$out/noop-reply.json" | tr -d '"' >"$out/noop-ids"
        echo "conveyor: noop batch of $n_noop: HTTP $code, $(wc -l <"$out/noop-ids") jobs queued"
    else
        echo "conveyor: noop batch of $n_noop: HTTP $code $(head -c 300 "$out/noop-reply.json")"
    fi

    [ "$STOP" = 0 ] || { run_stop; return; }
    echo "conveyor: waiting for activations to finish (deadline ${deadline_s}s)"
    deadline=$(($(now_s) + deadline_s))
    while [ "$STOP" = 0 ]; do
        if [ -n "$base" ] && i=$(terminal_count); then
            done=$((i - base))
        else
            # No transactions table to count: ask the API about each transaction.
            done=0
            for t in "${txns[@]}"; do
                [ -n "$t" ] || continue
                curl -fsS --max-time 5 -H "Authorization: Bearer $CONVEYOR_API_KEY" \
                    "$CONVEYOR_API_URL/api/v1/activation/status/$t/" 2>/dev/null |
                    grep -Eq '"(SUCCESS|FAILED)"' && done=$((done + 1))
            done
        fi
        progress "$done" "$accepted" "SUCCESS or FAILED"
        [ "$done" -ge "$accepted" ] && break
        if [ "$(now_s)" -ge "$deadline" ]; then
            echo
            cv_err "only $done of $accepted activations finished within ${deadline_s}s"
            break
        fi
        sleep 0.5
    done
    echo
    [ "$STOP" = 0 ] || { run_stop; return; }
    noop_report "$out/noop-ids"
    orders_demo
    [ "$STOP" = 0 ] || { run_stop; return; }
    echo "conveyor: transactions by status"
    psql "$CONVEYOR_PG_DSN" -Xq \
        -c 'SELECT status, count(*) FROM transactions GROUP BY status ORDER BY status' 2>&1 |
        sed 's/^/  /' || true
    echo "conveyor: a few balances (every account starts with 1000.00)"
    psql "$CONVEYOR_PG_DSN" -Xq \
        -c 'SELECT user_id, balance FROM accounts ORDER BY user_id LIMIT 5' 2>&1 |
        sed 's/^/  /' || true
    echo "conveyor: running; Ctrl-C stops the stack"
    while [ "$STOP" = 0 ]; do
        sleep 3600 &
        SLEEPER=$!
        wait "$SLEEPER" || true
    done
    run_stop
}

# orders_state_line [LIKE]: the orders (whose id is LIKE the pattern) per state, one line.
orders_state_line() {
    sql "SELECT string_agg(s || ' ' || coalesce(n, 0), ' | ' ORDER BY o) FROM
           (VALUES (1,'PENDING_POST'),(2,'POSTED'),(3,'AWAITING_TRACKING'),(4,'TRACKED'),
                   (5,'MIRAKL_OK'),(6,'COMPLETE'),(7,'FAILED_POST'),(8,'FAILED_TRACKING'),
                   (9,'FAILED_PUSH')) v(o, s)
           LEFT JOIN (SELECT internal_state, count(*) n FROM orders
                       WHERE order_id LIKE '${1:-%}' GROUP BY 1) c
             ON c.internal_state = v.s" 2>/dev/null
}

# orders_demo: new marketplace orders in the simulator, fetched by the schedule (and once
# at once), posted to their carriers, tracked by signed webhooks, pushed back to Mirakl:
# the states move on screen until every order is COMPLETE or failed. Then the simulator
# keeps making one order a second, so the pipeline keeps flowing while the stack runs.
orders_demo() {
    local n=${STACK_ORDERS:-40} deadline_s=${STACK_RUN_DEADLINE_S:-180} deadline done i run
    local weights=(0.4 2.5 7.5 3.1) countries=(ES ES ES PT) list=
    # ids of this run only: a database kept from an earlier stack holds older orders
    run=DEMO-$(date +%s)
    for ((i = 1; i <= n; i++)); do
        list+="${list:+,}{\"order_id\":\"$run-$i\",\"weight\":${weights[i % 4]},"
        list+="\"country_iso_code\":\"${countries[(i / 4) % 4]}\"}"
    done
    echo "conveyor: the order pipeline: $n Mirakl orders -> carriers -> tracking -> Mirakl"
    curl -fsS --max-time 10 -X POST -d "{\"orders\":[$list]}" \
        "$CONVEYOR_SIM_URL/admin/mirakl/orders" >/dev/null 2>&1 ||
        { cv_err "the simulator refused to make orders"; return 0; }
    curl -fsS --max-time 10 -X POST -H "Authorization: Bearer $CONVEYOR_API_KEY" \
        "$CONVEYOR_API_URL/api/v1/orchestrator/fetch-orders" >/dev/null 2>&1 || true
    deadline=$(($(now_s) + deadline_s))
    while [ "$STOP" = 0 ]; do
        done=$(sql "SELECT count(*) FROM orders WHERE order_id LIKE '$run-%' AND internal_state
                    IN ('COMPLETE','FAILED_POST','FAILED_TRACKING','FAILED_PUSH')" 2>/dev/null) ||
            done=0
        printf '\r  %s   ' "$(orders_state_line "$run-%")"
        [ "$done" -ge "$n" ] && break
        if [ "$(now_s)" -ge "$deadline" ]; then
            echo
            cv_err "only $done of $n orders finished within ${deadline_s}s"
            break
        fi
        sleep 1
    done
    echo
    curl -fsS --max-time 10 -X POST -d '{"per_second":1}' \
        "$CONVEYOR_SIM_URL/admin/mirakl/order_rate" >/dev/null 2>&1 || true
    echo "conveyor: Mirakl now makes one order a second; watch them: conveyorctl orders," \
        "conveyorctl ops tail --follow, or GET /api/v1/logs/orders-view"
}

# noop_report IDS_FILE: the states of the noop jobs, asked of GET /v1/jobs/{id} for a sample
# of up to 50 of them.
noop_report() {
    local id st line
    [ -s "$1" ] || return 0
    line=$(shuf -n 50 "$1" 2>/dev/null || head -n 50 "$1") || return 0
    for id in $line; do
        st=$(curl -fsS --max-time 5 -H "Authorization: Bearer $CONVEYOR_API_KEY" \
            "$CONVEYOR_API_URL/v1/jobs/$id" 2>/dev/null |
            sed -nE 's/.*"status"[[:space:]]*:[[:space:]]*"([a-z]+)".*/\1/p') || st=
        echo "${st:-unknown}"
    done | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2} END {print ""}' |
        sed 's/^/conveyor: noop job states in a sample: /'
}

# run_stop: end of `run` (Ctrl-C or TERM): stop the idle sleep, then the stack, in order.
run_stop() {
    [ -z "$SLEEPER" ] || kill "$SLEEPER" 2>/dev/null || true
    echo
    trap '' INT TERM    # the stack goes down in order, whatever else arrives
    cmd_down
}

# Ctrl-C and SIGTERM during up and run only set STOP (and end run's idle sleep); the main flow
# notices and stops the stack in order. Doing the work inside the handler is fragile in bash.
STOP=0 SLEEPER=''
on_signal() {
    STOP=1
    [ -z "$SLEEPER" ] || kill "$SLEEPER" 2>/dev/null || true
}

# go_on: false (after saying so) once Ctrl-C or SIGTERM arrived.
go_on() {
    [ "$STOP" = 0 ] && return 0
    cv_err "interrupted"
    return 1
}

case "${1:-}" in
up)
    trap on_signal INT TERM
    cmd_up
    ;;
down) cmd_down ;;
destroy) cmd_destroy ;;
run)
    trap on_signal INT TERM
    cmd_run
    ;;
status) cmd_status ;;
*)
    echo "usage: $0 {up|down|run|status|destroy}" >&2
    exit 2
    ;;
esac
