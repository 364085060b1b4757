#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup and dump_logs run from traps
# tests/harness/run-integ.sh - run the integration tests (`make integ`).
#
# Starts one redis-server (AOF) and one PostgreSQL on free 127.0.0.1 ports in a fresh temp
# dir, and one Kafka mock cluster (conveyor-kmock: 3 brokers, random ports), migrates and
# seeds the database with the sanitizer conveyorctl, then runs the Criterion
# binary one test at a time. Each test starts the Conveyor processes it needs through
# tests/harness/harness.c, with logs in the same temp dir. On failure the tail of every log
# there is printed and the dir is kept; on success it is removed. Whatever this script
# started is stopped on exit, however it exits. The exit status is the test binary's.
#
# The transport stays Redis Streams unless a test says otherwise: a test of the Kafka
# transport sets it per test (cfg_set in-process, CONVEYOR_BROKER_TRANSPORT=kafka and
# CONVEYOR_KAFKA_BOOTSTRAP_SERVERS in the env of the processes it spawns) from
#   CONVEYOR_TEST_KAFKA_BOOTSTRAP  the mock cluster's bootstrap list
#   CONVEYOR_TEST_KMOCK_PID        its pid: SIGUSR1 sets every broker down, SIGUSR2 up again
# Any CONVEYOR_BROKER_* or CONVEYOR_KAFKA_* of the caller's shell is dropped first.
#
# Env knobs: CONVEYOR_TEST_BIN (build/san/bin), CONVEYOR_INTEG_BIN (build/san/integ_tests),
# CONVEYOR_INTEG_TIMEOUT_S (900), CONVEYOR_KEEP_TEST_DIR=1 (keep the temp dir), and extra
# Criterion arguments after the script name (say --filter 'smoke/*').
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

BIN_DIR=${CONVEYOR_TEST_BIN:-$ROOT/build/san/bin}
INTEG=${CONVEYOR_INTEG_BIN:-$ROOT/build/san/integ_tests}
TIMEOUT_S=${CONVEYOR_INTEG_TIMEOUT_S:-900}

for f in "$INTEG" "$BIN_DIR/conveyorctl" "$BIN_DIR/conveyor-kmock"; do
    [ -x "$f" ] || { cv_err "missing $f: run 'make san' first"; exit 1; }
done

T=$(scratch_dir conveyor-integ)
export CV_STATE_DIR=$T
status=1
tpid=

dump_logs() {
    local f
    echo "===== logs in $T =====" >&2
    while IFS= read -r f; do
        log_tail "$f" 40
    done < <(find "$T" -name '*.log' -type f -size +0 2>/dev/null | sort)
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    # timeout(1) runs the tests in its own process group, out of reach of a terminal's
    # Ctrl-C: pass our signal on (it forwards it to the test binary).
    if [ -n "$tpid" ] && kill -0 "$tpid" 2>/dev/null; then
        local cpid
        cpid=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null)
        kill -TERM "$tpid" 2>/dev/null
        wait "$tpid" 2>/dev/null
        # Criterion leaves its socket behind when it is killed.
        for cpid in $cpid; do rm -f "/tmp/criterion_$cpid.sock"; done
    fi
    # Anything a crashed test left running (hn_spawn records pids in $T/pids).
    CV_QUIET=1 stop_pids "$T" 10
    CV_QUIET=1 stop_pg "$T"
    CV_QUIET=1 stop_redis "$T/redis"
    if [ "$status" -ne 0 ]; then
        dump_logs
        echo "conveyor: integration tests failed (status $status); files kept in $T" >&2
    elif [ "${CONVEYOR_KEEP_TEST_DIR:-0}" = 1 ]; then
        echo "conveyor: test files kept in $T" >&2
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
# stopped with the test processes by stop_pids in cleanup (start_bg records it in $T/pids)
KAFKA_BOOT=$(CV_QUIET=1 start_kmock "$T/kmock" "$BIN_DIR/conveyor-kmock")
KMOCK_PID=$(pidfile_pid "$T/pids/kmock.pid")

export CONVEYOR_TEST_DIR=$T
export CONVEYOR_TEST_BIN=$BIN_DIR
export CONVEYOR_TEST_LIB=$ROOT/scripts/lib.sh
export CONVEYOR_TEST_REDIS_DIR=$T/redis
export CONVEYOR_TEST_REDIS_PORT=$REDIS_PORT
export CONVEYOR_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export CONVEYOR_PG_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/conveyor
export CONVEYOR_MIGRATIONS=$ROOT/migrations
export CONVEYOR_LOG_LEVEL=${CONVEYOR_LOG_LEVEL:-info}
export CONVEYOR_TEST_KAFKA_BOOTSTRAP=$KAFKA_BOOT
export CONVEYOR_TEST_KMOCK_PID=$KMOCK_PID
# the default transport (redis) for every test that does not choose one
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E '^CONVEYOR_(BROKER|KAFKA)_')
# Sanitizer reports go to each child's stderr, which the harness keeps in its log and scans.
# (no log_path: a report in a file next to the log would go unnoticed).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1
unset CONVEYOR_CONFIG CONVEYOR_API_KEYS

for step in migrate seed; do
    if ! "$BIN_DIR/conveyorctl" "$step" >>"$T/conveyorctl.log" 2>&1; then
        cv_err "conveyorctl $step failed"
        exit 1
    fi
done

echo "conveyor: redis 127.0.0.1:$REDIS_PORT, postgres 127.0.0.1:$PG_PORT," \
    "kafka mock $KAFKA_BOOT (pid $KMOCK_PID), files in $T" >&2
set +e
timeout --kill-after=10 "$TIMEOUT_S" "$INTEG" --jobs 1 --verbose "$@" &
tpid=$!
wait "$tpid"
status=$?
tpid=
set -e
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    cv_err "integration tests timed out after ${TIMEOUT_S}s"
fi
exit "$status"
