# shellcheck shell=bash
# bench/lib.sh - what bench/run.sh (`make bench`) and bench/peers.sh (`make bench-peers`)
# share: the Conveyor stack they start and the ways they measure it. Source it after
# scripts/lib.sh, with these set by the caller:
#   ROOT   the checkout          T     the run's scratch_dir (CV_STATE_DIR too)
#   BIN    release binaries      CVB   build/rel/bench/cvbench
#   SECS   seconds per wrk run   CORES nproc
# Nothing here prints on success but the values asked for.

# bench_cleanup: stop everything recorded in $T (start_bg processes, the Redis of $T/redis,
# the PostgreSQL cluster) and delete $T, unless BENCH_KEEP=1. For `trap ... EXIT`.
bench_cleanup() {
    set +e
    stop_pids "$T" 20
    stop_redis "$T/redis"
    drop_pg "$T"
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $T" >&2; else rm -rf "$T"; fi
}

# bench_stack: Conveyor as shipped on free ports: redis-server (AOF everysec, start_redis),
# PostgreSQL migrated and seeded (accounts 1..100, offers), the simulator (the activation
# system) and the API. Sets RP PP AP SP (ports), API (its URL) and KEY (a fresh API key),
# and exports the CONVEYOR_* variables conveyor-worker and cvbench read.
# shellcheck disable=SC2034  # RP PP AP SP API KEY are the caller's
bench_stack() {
    local hash
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
    hash=$("$BIN/conveyorctl" hash-key "$KEY")
    export CONVEYOR_API_KEYS="bench:$hash:*"
    bench_sim_api
    API=http://127.0.0.1:$AP
}

# bench_sim_api: the simulator on $SP and the API on $AP, started with the environment as it
# is, once both answer /health
bench_sim_api() {
    start_bg sim "$T/sim.log" "$BIN/conveyor-sim" --port "$SP"
    CONVEYOR_HTTP_PORT=$AP start_bg api "$T/api.log" "$BIN/conveyor-api"
    wait_http "http://127.0.0.1:$SP/health" 20
    wait_http "http://127.0.0.1:$AP/health" 20
}

# bench_wrk_scripts: $T/post.lua (one {} per POST) and $T/batch.lua (an array of 1000 {}),
# both authorized with $KEY, and $T/get.lua (a plain GET, for nginx).
bench_wrk_scripts() {
    local i
    echo 'wrk.method = "GET"' >"$T/get.lua"
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
}

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

# peak_rss_kb NAME...: the largest peak RSS (VmHWM, kB) among the start_bg processes NAME...,
# each counted with its children (a process pool's worker is its whole tree).
peak_rss_kb() {
    local name pid kids max=0 v
    for name in "$@"; do
        pid=$(pidfile_pid "$T/pids/$name.pid") || continue
        kids=$(cat "/proc/$pid/task/"*/children 2>/dev/null || true)
        # shellcheck disable=SC2086
        v=$(for p in "$pid" $kids; do cat "/proc/$p/status" 2>/dev/null; done |
            awk '/^VmHWM/ {s += $2} END {print s + 0}')
        [ "$v" -le "$max" ] || max=$v
    done
    echo "$max"
}

# timed_drain WORKERS START... -- WAIT...: the drain of jobs queued already, by WORKERS
# worker processes: WAIT... (cvbench wait, meter.py wait: prints "name jobs/s ...") runs in
# the background first, then `START... I` starts worker I (as start_bg "workerI") for I in
# 1..WORKERS, all at once (CV_BG_CHECK=0), and only then are they checked alive. The waiter
# times from the first job it sees end, so it must be watching before any worker runs, and
# start_bg's 0.2 s look per worker would hold worker 2 back for a good part of a small drain.
# Prints "jobs/s peak-RSS-kB" (the largest worker's) and stops the workers; when a worker
# did not start, the waiter and the workers go and it fails.
timed_drain() {
    local n=$1 start=() w names=() waiter rate pid
    shift
    while [ "$1" != -- ]; do start+=("$1"); shift; done
    shift
    "$@" >"$T/drain.out" &
    waiter=$!
    for ((w = 1; w <= n; w++)); do
        names+=("worker$w")
        CV_BG_CHECK=0 "${start[@]}" "$w"
    done
    sleep 0.2
    for w in "${names[@]}"; do
        pid=$(pidfile_pid "$T/pids/$w.pid") && proc_alive "$pid" && continue
        cv_err "$w exited at once"
        log_tail "$T/$w.log"
        # the waiter would poll until its timeout: it goes, the workers started go too
        kill "$waiter" 2>/dev/null || true
        wait "$waiter" 2>/dev/null || true
        stop_pids "$T" 20 worker
        return 1
    done
    wait "$waiter"
    rate=$(awk '{print $2; exit}' "$T/drain.out")
    rss=$(peak_rss_kb "${names[@]}")
    # stopped before the answer: callers read it through a process substitution and go on
    # at once, and a stop still running then would delete the pid files of the workers
    # they start next (make bench left the latency step's workers running)
    stop_pids "$T" 20 worker
    echo "$rate $rss"
}

# cv_worker TYPE CONCURRENCY I: conveyor-worker number I
cv_worker() {
    start_bg "worker$3" "$T/worker$3.log" "$BIN/conveyor-worker" --types "$1" --concurrency "$2"
}

drain() { # WORKERS TYPE N CONCURRENCY -> "jobs/s peak-RSS-kB"
    timed_drain "$1" cv_worker "$2" "$4" -- "$CVB" wait "$2" "$3" 300
}

# nginx_static_rate CONNS LOG: requests/s of nginx (Debian's nginx-light) serving a static
# file the size of a 202 answer to the same wrk as the API's single-POST run: what a small
# HTTP answer costs on this machine (issue 8's single-POST target is a ratio of it). The
# settings of Debian's /etc/nginx/nginx.conf (worker_processes auto, sendfile, tcp_nopush,
# an access log) with LOG=on, the same without the access log with LOG=off. Starts and
# stops its own nginx.
nginx_static_rate() {
    local d=$T/nginx port rate log="access_log off;"
    [ "$2" = off ] || log="access_log $d/logs/access.log;"
    port=$(free_port 1)
    mkdir -p "$d/www" "$d/logs"
    printf '{"id":"00000000-0000-4000-8000-000000000000","state":"queued"}' >"$d/www/job.json"
    cat >"$d/nginx.conf" <<EOT
worker_processes auto;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    default_type application/json;
    $log
    client_body_temp_path $d/tmp;
    server { listen 127.0.0.1:$port; root $d/www; }
}
EOT
    start_bg nginx "$d/nginx.log" /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
    wait_http "http://127.0.0.1:$port/job.json" 20
    rate=$(wrk_rate "$T/get.lua" "http://127.0.0.1:$port/job.json" "$1")
    stop_pids "$T" 20 nginx
    rm -f "$d/logs/access.log"
    echo "$rate"
}

# pgbench_ceiling CLIENTS: transactions/s of pgbench running one activation per PostgreSQL
# transaction (cv_activation_reserve then cv_activation_finish of one job, committed, on the
# seeded accounts and offer 1) with CLIENTS connections for SECS: what a worker doing one
# transaction per job could reach at most. Leaves the rows it made (the caller truncates).
pgbench_ceiling() {
    cat >"$T/act.pgbench" <<'EOT'
\set uid random(1, 100)
BEGIN;
SELECT gen_random_uuid() AS t \gset
SELECT outcome FROM cv_activation_reserve(ARRAY[:t::uuid], ARRAY[:uid]::bigint[], ARRAY[1]::bigint[], ARRAY[1]::bigint[]);
SELECT outcome FROM cv_activation_finish(ARRAY[:t::uuid], ARRAY[true], ARRAY[1]::bigint[], ARRAY[NULL]::text[]);
COMMIT;
EOT
    local tps
    tps=$(pgbench -n -M prepared -c "$1" -j "$CORES" -T "$SECS" -f "$T/act.pgbench" \
        "$CONVEYOR_PG_DSN" 2>"$T/pgbench.log" | awk '/^tps/ {printf "%.0f", $3}')
    if [ -z "$tps" ]; then
        echo "bench: pgbench failed:" >&2
        cat "$T/pgbench.log" >&2
        return 1
    fi
    echo "$tps"
}

# redis_used_memory: used_memory of Conveyor's Redis, in bytes
redis_used_memory() {
    redis-cli -p "$RP" INFO memory | awk -F: '/^used_memory:/ {printf "%.0f", $2}'
}

# wait_aof_rewrite SECONDS: until Conveyor's Redis runs no AOF rewrite (at most SECONDS)
wait_aof_rewrite() {
    local end=$((SECONDS + $1))
    while redis-cli -p "$RP" INFO persistence | grep -q '^aof_rewrite_in_progress:1'; do
        [ "$SECONDS" -lt "$end" ] || { echo "bench: an AOF rewrite outlasted $1 s" >&2; return 1; }
        sleep 0.2
    done
}

# redis_cpu_us [DIR]: the CPU time so far of the redis-server of DIR (default $T/redis), in
# microseconds (/proc utime + stime)
# shellcheck disable=SC2120  # DIR is optional
redis_cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) / hz * 1e6}' \
        "/proc/$(head -n 1 "${1:-$T/redis}/redis.pid")/stat"
}
# per_job US0 US1 N: microseconds of Redis CPU per job between two redis_cpu_us readings
per_job() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (b - a) / n}'; }
# ratio A B: A / B to two places
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
