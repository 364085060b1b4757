#!/usr/bin/env bash
# scripts/lib.sh - shell functions shared by scripts/stack.sh and tests/harness/run-integ.sh.
#
# Source it (`. scripts/lib.sh`) or run one function: `bash scripts/lib.sh start_redis DIR PORT`.
# Every wait has a deadline; a failure prints one clear line plus the tail of the log concerned
# to stderr and returns non-zero. Nothing here kills a process it did not record: redis by its
# pidfile, PostgreSQL through pg_ctl and postmaster.pid, everything else by the pidfiles that
# start_bg writes (PID plus its start time, so a reused PID is never signalled).
#
# Variables (all optional):
#   CV_STATE_DIR        where start_bg/stop_pids keep pids/ (default: current directory)
#   CONVEYOR_PG_BIN     PostgreSQL server binaries (default: /usr/lib/postgresql/15/bin, else PATH)
#   CONVEYOR_PG_OPTS    extra postgres options for start_pg, e.g. "-c fsync=off"
#   CV_QUIET=1          start_*/stop_* print nothing on success

CV_ROOT=${CV_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

cv_say() { [ "${CV_QUIET:-0}" = 1 ] || printf 'conveyor: %s\n' "$*" >&2; }
cv_err() { printf 'conveyor: error: %s\n' "$*" >&2; }

# log_tail FILE [LINES]: show the end of a log on stderr, framed, for error messages.
log_tail() {
    local f=$1 n=${2:-30}
    if [ -s "$f" ]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2
        printf -- '----- end of %s -----\n' "$f" >&2
    else
        printf 'conveyor: (log %s is empty or missing)\n' "$f" >&2
    fi
}

# now_s: monotonic-enough seconds for deadlines (bash's SECONDS is per shell; this is global).
now_s() { date +%s; }

# ---- ports -------------------------------------------------------------------------------

# free_port [N]: print N (default 1) distinct free TCP ports on 127.0.0.1, one per line.
free_port() {
    local n=${1:-1} fp="$CV_ROOT/build/san/tests/freeport"
    if [ -x "$fp" ]; then
        "$fp" "$n" && return 0
    fi
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" <<'EOF' && return 0
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
    fi
    # Last resort: probe random high ports; a refused connect means nobody listens there.
    local i p found=0
    for ((i = 0; i < 500 && found < n; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            found=$((found + 1))
        fi
    done
    [ "$found" -eq "$n" ] || { cv_err "free_port: no free port found"; return 1; }
}

# port_is_free PORT: true when 127.0.0.1:PORT can be bound right now.
port_is_free() {
    local p=$1 fp="$CV_ROOT/build/san/tests/freeport" got
    if [ -x "$fp" ]; then
        got=$("$fp" -p "$p" 2>/dev/null | head -n 1)
        [ "$got" = "$p" ]
        return
    fi
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as servers do: TIME_WAIT is fine
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null
        return
    fi
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

# pick_port PREFERRED: print PREFERRED when free, else any free port.
pick_port() {
    if port_is_free "$1"; then echo "$1"; else free_port 1; fi
}

# scratch_dir PREFIX: print a new empty directory ${TMPDIR:-/tmp}/PREFIX.XXXXXX, searchable
# (0711) so that a PostgreSQL run as user postgres can keep its cluster inside (see start_pg).
# The directory is the caller's own and new: this changes no one else's permissions.
scratch_dir() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || return 1
    chmod 711 "$d"
    echo "$d"
}

# start_on_free_port FUNCTION DIR: run `FUNCTION DIR PORT` (start_redis, start_pg) on a fresh
# free port and print the port; a port lost to another process in between gets another try
# (3 in all). The function's own output goes to stderr.
start_on_free_port() {
    local fn=$1 dir=$2 port try
    for try in 1 2 3; do
        port=$(free_port 1)
        if CV_QUIET=1 "$fn" "$dir" "$port" >&2; then
            echo "$port"
            return 0
        fi
        cv_err "$fn on port $port failed (try $try of 3)"
    done
    return 1
}

# ---- process records ---------------------------------------------------------------------

# proc_starttime PID: the process start time (field 22 of /proc/PID/stat), empty if gone.
proc_starttime() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }           # fields after "(comm)"; comm may contain spaces
    # shellcheck disable=SC2086
    set -- $rest
    echo "${20}"
}

# proc_alive PID: true while PID exists and is not a zombie.
proc_alive() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    [ "${rest%% *}" != Z ]
}

# pidfile_pid FILE: print the PID recorded in FILE when that very process is still alive
# (same start time when the file records one). Fails otherwise.
pidfile_pid() {
    local f=$1 pid st now
    [ -r "$f" ] || return 1
    { read -r pid; read -r st; } <"$f" || true
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    proc_alive "$pid" || return 1
    if [ -n "${st:-}" ]; then
        now=$(proc_starttime "$pid") || return 1
        [ "$now" = "$st" ] || return 1
    fi
    echo "$pid"
}

# record_pid FILE PID: write PID and its start time.
record_pid() {
    local st
    st=$(proc_starttime "$2") || st=
    printf '%s\n%s\n' "$2" "$st" >"$1"
}

# wait_gone DEADLINE_S PID...: wait until every PID is gone; true when they all went.
wait_gone() {
    local deadline=$(($(now_s) + $1)) p left
    shift
    while :; do
        left=0
        for p in "$@"; do proc_alive "$p" && left=1; done
        [ "$left" -eq 0 ] && return 0
        [ "$(now_s)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# start_bg NAME LOGFILE CMD...: start CMD in the background in its own session, stdout and
# stderr appended to LOGFILE, stdin from /dev/null. Records the PID in
# $CV_STATE_DIR/pids/NAME.pid. Prints nothing. Fails when CMD is gone 0.2 s later.
start_bg() {
    local name=$1 log=$2 dir=${CV_STATE_DIR:-.} pid
    shift 2
    mkdir -p "$dir/pids" "$(dirname "$log")"
    # The subshell is not a process-group leader, so setsid(1) calls setsid() without forking
    # and then execs CMD: $! is CMD's own PID. Its own session keeps a terminal's Ctrl-C and
    # hangup away from it; stop_pids stops it in order.
    if [[ $- == *m* ]]; then
        (exec "$@" >>"$log" 2>&1 </dev/null) &   # job control on: setsid would fork
    else
        (exec setsid "$@" >>"$log" 2>&1 </dev/null) &
    fi
    pid=$!
    disown "$pid" 2>/dev/null || true    # no "Killed" job notices from this shell
    record_pid "$dir/pids/$name.pid" "$pid"
    # CV_BG_CHECK=0: no 0.2 s look (the caller starts several at once and looks itself)
    [ "${CV_BG_CHECK:-1}" = 0 ] && return 0
    sleep 0.2
    if ! proc_alive "$pid"; then
        cv_err "$name exited at once: $*"
        log_tail "$log"
        rm -f "$dir/pids/$name.pid"
        return 1
    fi
}

# kill_hard PID: SIGKILL PID, and its whole process group when PID leads one (start_bg gives
# each process its own session), so that no child it forked is left behind.
kill_hard() {
    local stat rest pgrp
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- "$1" $rest
    pgrp=$4
    if [ "$pgrp" = "$1" ]; then
        kill -KILL -- "-$1" 2>/dev/null || true
    else
        kill -KILL "$1" 2>/dev/null || true
    fi
}

# stop_pids DIR [TIMEOUT_S] [STAGE...]: stop the processes recorded in DIR/pids/*.pid.
# Each STAGE is a name prefix ("worker", "api", "sim"); stages are stopped one after the
# other, the processes of one stage together. No STAGE: everything at once. Each process
# gets SIGTERM, then SIGKILL when it is still alive TIMEOUT_S (default 15) seconds later.
# Only recorded PIDs whose start time still matches are signalled.
stop_pids() {
    local dir=$1 timeout=${2:-15} stage f pid pids files
    shift 2 || shift $#
    [ -d "$dir/pids" ] || return 0
    [ $# -gt 0 ] || set -- ""
    for stage in "$@"; do
        pids=() files=()
        for f in "$dir/pids/$stage"*.pid; do
            [ -e "$f" ] || continue
            pid=$(pidfile_pid "$f") || { files+=("$f"); continue; }
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid") && files+=("$f:$pid")
        done
        if [ ${#pids[@]} -gt 0 ] && ! wait_gone "$timeout" "${pids[@]}"; then
            for pid in "${pids[@]}"; do
                if proc_alive "$pid"; then
                    cv_err "pid $pid did not stop within ${timeout}s after SIGTERM: SIGKILL"
                    kill_hard "$pid"
                fi
            done
            wait_gone 5 "${pids[@]}" || cv_err "pids ${pids[*]} survived SIGKILL"
        fi
        # a file goes only while it still names what was stopped here (or nothing alive): a
        # process started meanwhile under the same name keeps its record
        for f in "${files[@]}"; do
            case $f in
            *.pid:*) [ "$(head -n1 "${f%:*}" 2>/dev/null)" = "${f##*:}" ] && rm -f "${f%:*}" ;;
            *) pidfile_pid "$f" >/dev/null || rm -f "$f" ;;
            esac
        done
    done
    return 0
}

# ---- Redis -------------------------------------------------------------------------------

# start_redis DIR PORT [LOGFILE]: redis-server on 127.0.0.1:PORT, data (AOF on, no RDB
# snapshots) in DIR, pidfile DIR/redis.pid, log LOGFILE (default DIR/redis.log). Ready when PING
# answers PONG (deadline 10 s). Running it again on the same DIR restarts from the AOF; when it
# already runs on PORT it says so and succeeds.
# Memory and AOF (README "Redis memory and AOF"): CONVEYOR_REDIS_MAXMEMORY (0 = no bound)
# with policy volatile-lru (CONVEYOR_REDIS_MAXMEMORY_POLICY): past the bound Redis drops the
# least recently used keys that expire anyway (finished jobs' status, old idempotency keys)
# and refuses new work (the API's 503) once only live jobs remain; automatic AOF rewrites
# wait for 256mb of AOF (CONVEYOR_REDIS_AOF_REWRITE_MIN_SIZE) and fsync incrementally.
start_redis() {
    local dir=$1 port=$2 log=${3:-} deadline pid old
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -n "$log" ] || log=$dir/redis.log
    mkdir -p "$(dirname "$log")"
    if pid=$(pidfile_pid "$dir/redis.pid"); then
        old=$(cat "$dir/redis.port" 2>/dev/null || true)
        if [ "$old" = "$port" ]; then
            cv_say "redis already running (pid $pid, port $port)"
            return 0
        fi
        cv_err "redis in $dir already runs (pid $pid) on port ${old:-?}, not $port"
        return 1
    fi
    rm -f "$dir/redis.pid"
    echo "$port" >"$dir/redis.port"
    echo "$log" >"$dir/redis.logpath"
    if ! redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$log" --dir "$dir" \
        --appendonly yes --appendfsync everysec --save "" \
        --auto-aof-rewrite-percentage 100 \
        --auto-aof-rewrite-min-size "${CONVEYOR_REDIS_AOF_REWRITE_MIN_SIZE:-256mb}" \
        --aof-rewrite-incremental-fsync yes \
        --maxmemory "${CONVEYOR_REDIS_MAXMEMORY:-0}" \
        --maxmemory-policy "${CONVEYOR_REDIS_MAXMEMORY_POLICY:-volatile-lru}" >>"$log" 2>&1; then
        cv_err "redis-server failed to start on port $port"
        log_tail "$log"
        return 1
    fi
    deadline=$(($(now_s) + 10))
    until [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; do
        pid=$(head -n 1 "$dir/redis.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && ! proc_alive "$pid"; then
            cv_err "redis-server on port $port exited during start"
            log_tail "$log"
            rm -f "$dir/redis.pid"
            return 1
        fi
        if [ "$(now_s)" -ge "$deadline" ]; then
            cv_err "redis on port $port did not answer PING within 10s"
            log_tail "$log"
            stop_redis "$dir" >/dev/null 2>&1 || true
            return 1
        fi
        sleep 0.05
    done
    # The daemon wrote its pidfile; add its start time so a reused PID is never signalled.
    pid=$(head -n 1 "$dir/redis.pid")
    record_pid "$dir/redis.pid" "$pid"
    cv_say "redis up on 127.0.0.1:$port (pid $pid, data $dir)"
}

# stop_redis DIR [TIMEOUT_S]: SIGTERM the redis recorded in DIR/redis.pid (it flushes the AOF
# and exits), SIGKILL after TIMEOUT_S (default 10). Data stays in DIR.
stop_redis() {
    local dir=$1 timeout=${2:-10} pid
    pid=$(pidfile_pid "$dir/redis.pid") || { rm -f "$dir/redis.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$timeout" "$pid"; then
        cv_err "redis (pid $pid) did not stop within ${timeout}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone 5 "$pid" || { cv_err "redis (pid $pid) survived SIGKILL"; return 1; }
    fi
    rm -f "$dir/redis.pid"
    cv_say "redis stopped (pid $pid)"
}

# ---- Kafka: librdkafka's mock cluster -----------------------------------------------------

# start_kmock DIR [BIN [ARGS...]]: conveyor-kmock (BIN, default bin/conveyor-kmock; ARGS go to
# it: -b brokers, -p partitions, -x topic prefix) as the start_bg process "kmock" (pidfile
# $CV_STATE_DIR/pids/kmock.pid), log DIR/kmock.log. Ready when its bootstrap list is in
# DIR/kmock.bootstrap (it writes a temp file and renames it, so the list is whole; deadline
# 10 s). Prints the list ("127.0.0.1:p1,127.0.0.1:p2,..."). The cluster lives in memory: each
# start is an empty cluster on new ports. When it already runs, prints its list again.
start_kmock() {
    local dir=$1 bin=${2:-$CV_ROOT/bin/conveyor-kmock} pidf deadline
    shift 2 || shift $#
    pidf=${CV_STATE_DIR:-.}/pids/kmock.pid
    mkdir -p "$dir"
    if pidfile_pid "$pidf" >/dev/null && [ -s "$dir/kmock.bootstrap" ]; then
        cv_say "kafka mock cluster already running (pid $(pidfile_pid "$pidf"))"
        cat "$dir/kmock.bootstrap"
        return 0
    fi
    [ -x "$bin" ] || { cv_err "missing $bin: run 'make all' (or 'make san')"; return 1; }
    rm -f "$dir/kmock.bootstrap"
    start_bg kmock "$dir/kmock.log" "$bin" -o "$dir/kmock.bootstrap" "$@" || return 1
    deadline=$(($(now_s) + 10))
    until [ -s "$dir/kmock.bootstrap" ]; do
        if ! pidfile_pid "$pidf" >/dev/null; then
            cv_err "conveyor-kmock exited during start"
            log_tail "$dir/kmock.log"
            return 1
        fi
        if [ "$(now_s)" -ge "$deadline" ]; then
            cv_err "conveyor-kmock wrote no bootstrap list within 10s"
            log_tail "$dir/kmock.log"
            stop_kmock "$dir"
            return 1
        fi
        sleep 0.05
    done
    cv_say "kafka mock cluster up on $(cat "$dir/kmock.bootstrap") (pid $(pidfile_pid "$pidf"))"
    cat "$dir/kmock.bootstrap"
}

# stop_kmock DIR: stop the recorded conveyor-kmock (SIGTERM, SIGKILL after 10 s) and forget its
# bootstrap list: the next cluster has other ports.
stop_kmock() {
    stop_pids "${CV_STATE_DIR:-.}" 10 kmock
    rm -f "$1/kmock.bootstrap"
}

# ---- PostgreSQL --------------------------------------------------------------------------

pg_bindir() {
    if [ -n "${CONVEYOR_PG_BIN:-}" ]; then echo "$CONVEYOR_PG_BIN"; return; fi
    if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then echo /usr/lib/postgresql/15/bin; return; fi
    local d
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1)
    if [ -n "$d" ]; then echo "$d"; return; fi
    dirname "$(command -v pg_ctl 2>/dev/null || echo /usr/bin/pg_ctl)"
}

# as_pg CMD...: run CMD as the postgres user when we are root (PostgreSQL refuses root). It
# runs from / because postgres may not be allowed into the caller's working directory.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Where a cluster lives. start_pg DIR keeps it in DIR/pg whenever the server's user can reach
# it. As root the server runs as user postgres, which cannot enter a checkout below /root
# (0700) or below a `mktemp -d` directory (0700); nothing here changes the permissions of
# someone's directories to let it in. The cluster then lives in pg_home/<h>/pg instead (owned
# by postgres, 0700), <h> being the first 16 hex digits of sha256(DIR's absolute path);
# DIR/pg.datadir records it, so stop_pg, a later start_pg and drop_pg find it again, even after
# the checkout moved. pg_home/<h>/checkout names DIR for whoever finds the directory.
# The server's log stays wherever the caller wants it: the caller's shell opens it and the
# server inherits the descriptor, so postgres needs no access to it either.

# pg_home: the parent of clusters that cannot live beside their DIR (CONVEYOR_PG_HOME,
# default /var/lib/conveyor).
pg_home() { echo "${CONVEYOR_PG_HOME:-/var/lib/conveyor}"; }

# pg_can_enter DIR: true when user postgres can search DIR (every parent included).
pg_can_enter() { runuser -u postgres -- test -x "$1" 2>/dev/null; }

# pg_datadir DIR: print the data directory of DIR's cluster (it may not exist yet): the one
# DIR/pg.datadir records, else DIR/pg when it already holds a cluster or when its server's user
# can reach it, else pg_home/<h>/pg. DIR must be absolute.
pg_datadir() {
    local dir=$1 rec=
    [ ! -r "$dir/pg.datadir" ] || read -r rec <"$dir/pg.datadir" || true
    if [ -n "$rec" ]; then
        echo "$rec"
    elif [ "$(id -u)" -ne 0 ] || [ -e "$dir/pg/PG_VERSION" ] || pg_can_enter "$dir"; then
        echo "$dir/pg"
    else
        echo "$(pg_home)/$(printf '%s' "$dir" | sha256sum | cut -c1-16)/pg"
    fi
}

# start_pg DIR PORT [LOGFILE]: PostgreSQL with its cluster in DIR/pg, or where pg_datadir says
# (initdb on first use, trust auth, superuser postgres), unix socket in pgsock/ beside the
# cluster, TCP on 127.0.0.1:PORT only, log LOGFILE (default DIR/pg.log). As root, initdb and
# the server run as user postgres. Creates database "conveyor" when missing. Ready when
# SELECT 1 answers (deadline 60 s). Records pid, port, log path (and the data directory when
# it is not DIR/pg) in DIR.
start_pg() {
    local dir=$1 port=$2 log=${3:-} bin data sock pid old home
    bin=$(pg_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -n "$log" ] || log=$dir/pg.log
    if [ ! -x "$bin/pg_ctl" ] || [ ! -x "$bin/initdb" ]; then
        cv_err "PostgreSQL server binaries not found in $bin (set CONVEYOR_PG_BIN or run make deps)"
        return 1
    fi
    data=$(pg_datadir "$dir")
    home=$(dirname "$data")
    sock=$home/pgsock
    if pid=$(pidfile_pid "$dir/pg.pid"); then
        old=$(cat "$dir/pg.port" 2>/dev/null || true)
        if [ "$old" = "$port" ]; then
            cv_say "postgres already running (pid $pid, port $port, data $data)"
            return 0
        fi
        cv_err "postgres in $data already runs (pid $pid) on port ${old:-?}, not $port"
        return 1
    fi
    mkdir -p "$(dirname "$log")"
    touch "$log"
    if [ "$data" != "$dir/pg" ]; then
        # Only directories of our own are created here, searchable so that postgres reaches
        # its data directory below them; an existing one keeps its mode.
        [ -d "$(dirname "$home")" ] || install -d -m 0755 "$(dirname "$home")"
        [ -d "$home" ] || install -d -m 0755 "$home"
        printf '%s\n' "$dir" >"$home/checkout"
        printf '%s\n' "$data" >"$dir/pg.datadir"
    fi
    mkdir -p "$data" "$sock"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$data" "$sock"
        chmod 700 "$data"
        if ! runuser -u postgres -- test -w "$data" -a -w "$sock"; then
            cv_err "user postgres cannot write $data or $sock (a parent directory is not searchable)"
            return 1
        fi
    fi
    if [ ! -s "$data/PG_VERSION" ]; then
        if ! as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
            >>"$log" 2>&1; then
            cv_err "initdb failed in $data"
            log_tail "$log"
            return 1
        fi
    fi
    echo "$port" >"$dir/pg.port"
    echo "$log" >"$dir/pg.logpath"
    # No -l: the server writes to the descriptor of LOGFILE opened here (see above).
    if ! as_pg "$bin/pg_ctl" -D "$data" -w -t 60 \
        -o "-p $port -k $sock -c listen_addresses=127.0.0.1 ${CONVEYOR_PG_OPTS:-}" start \
        >>"$log" 2>&1 </dev/null; then
        cv_err "postgres failed to start on port $port"
        log_tail "$log"
        return 1
    fi
    pid=$(head -n 1 "$data/postmaster.pid")
    record_pid "$dir/pg.pid" "$pid"
    if ! pg_wait "$port" 60; then
        log_tail "$log"
        return 1
    fi
    if [ "$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -XtAq \
        -c "SELECT 1 FROM pg_database WHERE datname = 'conveyor'" 2>>"$log")" != 1 ]; then
        if ! psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Xq \
            -c 'CREATE DATABASE conveyor' >>"$log" 2>&1; then
            cv_err "cannot create database conveyor on port $port"
            log_tail "$log"
            return 1
        fi
    fi
    cv_say "postgres up on 127.0.0.1:$port (pid $pid, data $data)"
}

# pg_wait PORT DEADLINE_S: wait until SELECT 1 answers on 127.0.0.1:PORT.
pg_wait() {
    local port=$1 deadline=$(($(now_s) + $2))
    until [ "$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -XtAq -c 'SELECT 1' \
        2>/dev/null)" = 1 ]; do
        if [ "$(now_s)" -ge "$deadline" ]; then
            cv_err "postgres on port $port did not answer SELECT 1 within $2s"
            return 1
        fi
        sleep 0.1
    done
}

# stop_pg DIR: pg_ctl stop -m fast; if that fails, SIGTERM/SIGKILL the recorded postmaster.
# The cluster stays where it is.
stop_pg() {
    local dir=$1 bin pid log data
    bin=$(pg_bindir)
    pid=$(pidfile_pid "$dir/pg.pid") || { rm -f "$dir/pg.pid"; return 0; }
    dir=$(cd "$dir" && pwd)
    data=$(pg_datadir "$dir")
    log=$(cat "$dir/pg.logpath" 2>/dev/null || echo "$dir/pg.log")
    if ! as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >>"$log" 2>&1 </dev/null; then
        cv_err "pg_ctl stop failed for $data; signalling postmaster $pid"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone 15 "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone 5 "$pid" || { cv_err "postmaster $pid survived SIGKILL"; return 1; }
        fi
    fi
    wait_gone 10 "$pid" || true
    rm -f "$dir/pg.pid"
    cv_say "postgres stopped (pid $pid)"
}

# drop_pg DIR: stop DIR's cluster and delete it, wherever it lives, with its records in DIR.
# A cluster outside DIR is deleted only when its checkout file names DIR.
drop_pg() {
    local dir=$1 data home owner=
    [ -d "$dir" ] || return 0
    stop_pg "$dir" || return 1
    dir=$(cd "$dir" && pwd)
    data=$(pg_datadir "$dir")
    home=$(dirname "$data")
    if [ "$data" = "$dir/pg" ]; then
        rm -rf "$data" "$dir/pgsock"
    elif [ -d "$home" ]; then
        [ ! -r "$home/checkout" ] || read -r owner <"$home/checkout" || true
        if [ "$owner" != "$dir" ] || ! [[ "$(basename "$home")" =~ ^[0-9a-f]{16}$ ]]; then
            cv_err "not deleting $home: its checkout file does not name $dir"
            return 1
        fi
        rm -rf "$home"
        cv_say "deleted $home"
    fi
    rm -f "$dir/pg.datadir" "$dir/pg.port" "$dir/pg.logpath"
}

# ---- HTTP --------------------------------------------------------------------------------

# wait_http URL DEADLINE_S: wait until GET URL answers 2xx.
wait_http() {
    local url=$1 deadline=$(($(now_s) + $2))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if [ "$(now_s)" -ge "$deadline" ]; then
            cv_err "$url did not answer 2xx within $2s"
            return 1
        fi
        sleep 0.1
    done
}

# Run a function when executed rather than sourced: bash scripts/lib.sh FUNCTION ARGS...
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    [ $# -gt 0 ] || { echo "usage: $0 FUNCTION [ARGS...]" >&2; exit 2; }
    "$@"
fi

# ---- the order pipeline against conveyor-sim ------------------------------------------------

# pipeline_env SIM_PORT API_PORT: export what conveyor-api, conveyor-worker and conveyor-sim
# need so that the order pipeline talks to the simulator: every upstream's URL on the sim's
# port, the demo credentials and webhook secret of deploy/demo.env, and the sim's webhook
# target (the API). A variable already set wins (an operator's own credentials).
pipeline_env() {
    local sim=$1 api=$2 line name value up prefix
    while IFS= read -r line; do
        case $line in '' | '#'*) continue ;; esac
        name=${line%%=*} value=${line#*=}
        [ -n "${!name:-}" ] || export "$name=$value"
    done <"$CV_ROOT/deploy/demo.env"
    for up in MIRAKL:mirakl TIPSA:tipsa SEUR:seur CORREOS_EXPRESS:cex ONTIME:ontime MELI:meli; do
        name=CONVEYOR_UPSTREAMS_${up%%:*}_URL prefix=${up#*:}
        [ -n "${!name:-}" ] || export "$name=http://127.0.0.1:$sim/$prefix"
    done
    [ -n "${CONVEYOR_SIM_WEBHOOK_URL:-}" ] || export CONVEYOR_SIM_WEBHOOK_URL="http://127.0.0.1:$api"
}
