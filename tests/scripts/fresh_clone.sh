#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup runs from a trap
# tests/scripts/fresh_clone.sh - the README's `make up` on a checkout nobody prepared. .ci/run
# calls it; a developer can run it alone: `bash tests/scripts/fresh_clone.sh`.
#
# Clones this checkout's HEAD (committed work only) into a new `mktemp -d` directory: 0700,
# like root's home, so that as root user postgres cannot enter the clone. In the clone:
#   1. `make up`;
#   2. one noop job (POST /v1/jobs/noop, GET /v1/jobs/ID until "succeeded") and one
#      activation (POST /api/v1/activation/, GET .../status/ID/ until SUCCESS), with curl
#      and var/stack.env, each polled with a deadline;
#   3. `make down`, and every process `make up` recorded must be gone;
#   4. `make up` again: PostgreSQL must find its data (the activation's row), then `make down`.
# It also checks that no directory of the clone changed its permissions, and, as root, that the
# PostgreSQL data directory lives outside the clone, owned by postgres and 0700. At the end the
# clone and its data are deleted, whatever happened. A failed step exits non-zero after the
# tail of the logs concerned. Bounded: the whole run gets FRESH_CLONE_TIMEOUT_S.
#
# Knobs: FRESH_CLONE_TIMEOUT_S (900), FRESH_CLONE_REV (HEAD: the commit to clone),
# FRESH_CLONE_KEEP=1 (stop the stack but keep the clone and its data).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CV_ROOT=$ROOT
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

TIMEOUT_S=${FRESH_CLONE_TIMEOUT_S:-900}
REV=$(git -C "$ROOT" rev-parse --verify "${FRESH_CLONE_REV:-HEAD}^{commit}")
DEADLINE=$(($(now_s) + TIMEOUT_S))
# Called from make or not, the clone's make must start afresh (no -C, -j or goals of ours).
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

D=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-fresh.XXXXXX")
C=$D/conveyor
VAR=$C/var
STEP=start
up_ran=0
status=1

say() { printf 'fresh_clone: %s\n' "$*"; }

fail() {
    cv_err "fresh_clone: step '$STEP' failed: $*"
    exit 1
}

# left: seconds left before the deadline (at least 1).
left() {
    local l=$((DEADLINE - $(now_s)))
    [ "$l" -gt 0 ] || l=1
    echo "$l"
}

# bounded CMD...: CMD with what is left of the time budget; SIGTERM then SIGKILL after it.
bounded() {
    local rc=0
    timeout --kill-after=15 "$(left)" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        cv_err "fresh_clone: '$*' ran out of time (FRESH_CLONE_TIMEOUT_S=$TIMEOUT_S)"
    fi
    return "$rc"
}

dump_logs() {
    local f
    for f in "$VAR"/log/*.log "$D"/*.log; do
        [ -s "$f" ] && log_tail "$f" 30
    done
    return 0
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ "$status" -ne 0 ]; then
        dump_logs
    fi
    if [ "$up_ran" = 1 ]; then
        # The clone's own `make down` stops what its `make up` recorded, nothing else.
        timeout --kill-after=10 120 make -C "$C" down >>"$D/down.log" 2>&1 ||
            { cv_err "fresh_clone: make down failed in cleanup"; log_tail "$D/down.log"; }
    fi
    if [ "${FRESH_CLONE_KEEP:-0}" = 1 ]; then
        say "kept $C (PostgreSQL data in $(pg_datadir "$VAR"))"
    else
        [ ! -d "$VAR" ] || CV_QUIET=1 drop_pg "$VAR"
        rm -rf "$D"
    fi
    if [ "$status" -eq 0 ]; then
        say "passed"
    else
        cv_err "fresh_clone: FAILED (status $status, step '$STEP')"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit' INT
trap 'status=143; exit' TERM

# modes: "mode path" for the temp dir and every directory of the clone (but .git/), before
# make up created var/, build/ and bin/.
modes() {
    stat -c '%a %n' "$D"
    find "$C" \( -path "$C/.git" -o -path "$VAR" \) -prune -o -type d -printf '%m %p\n' | sort
}

# poll_json URL PATTERN DEADLINE_S: GET URL with the stack's key until the body matches the
# extended regex PATTERN; the last body is in $D/poll.json.
poll_json() {
    local url=$1 pat=$2 deadline=$(($(now_s) + $3))
    while :; do
        curl -sS --max-time 5 -o "$D/poll.json" -H "Authorization: Bearer $CONVEYOR_API_KEY" \
            "$url" 2>>"$D/curl.log" || true
        grep -Eq "$pat" "$D/poll.json" 2>/dev/null && return 0
        if [ "$(now_s)" -ge "$deadline" ]; then
            cv_err "fresh_clone: $url did not match $pat within $3s; last answer:"
            head -c 600 "$D/poll.json" >&2 2>/dev/null
            echo >&2
            return 1
        fi
        sleep 0.2
    done
}

# post PATH BODY: POST a JSON body with the stack's key; 202 expected; the answer on stdout.
post() {
    local code
    code=$(curl -sS --max-time 10 -o "$D/post.json" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $CONVEYOR_API_KEY" -H 'Content-Type: application/json' \
        --data "$2" "$CONVEYOR_API_URL$1" 2>>"$D/curl.log") || code=000
    [ "$code" = 202 ] || fail "POST $1 answered HTTP $code: $(head -c 300 "$D/post.json" 2>/dev/null)"
    cat "$D/post.json"
}

# json_str FIELD: the string value of FIELD in the JSON on stdin.
json_str() { sed -nE "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"([^\"]+)\".*/\\1/p" | head -n 1; }

# up_pids: every PID the stack recorded (workers, api, sim, redis, postmaster).
up_pids() {
    local f
    for f in "$VAR"/pids/*.pid "$VAR/redis/redis.pid" "$VAR/pg.pid"; do
        [ -e "$f" ] && pidfile_pid "$f"
    done
    return 0
}

make_up() {
    say "make up in $C"
    up_ran=1
    bounded make -C "$C" -j"$(nproc)" up >"$D/up.log" 2>&1 || fail "make up exited non-zero"
    grep -E '^(conveyor|  [a-z]+ )' "$D/up.log" || true
    [ -r "$VAR/stack.env" ] || fail "make up wrote no var/stack.env"
    # shellcheck disable=SC1091
    . "$VAR/stack.env"
    : "${CONVEYOR_API_URL:?}" "${CONVEYOR_API_KEY:?}" "${CONVEYOR_PG_DSN:?}"
}

make_down() {
    local pids pid alive=()
    pids=$(up_pids)
    [ -n "$pids" ] || fail "make up recorded no process"
    say "make down (stack pids: $(echo "$pids" | tr '\n' ' '))"
    bounded make -C "$C" down >"$D/down.log" 2>&1 || fail "make down exited non-zero"
    for pid in $pids; do
        proc_alive "$pid" && alive+=("$pid")
    done
    [ ${#alive[@]} -eq 0 ] || fail "still running after make down: ${alive[*]}"
}

# ---- the run --------------------------------------------------------------------------------

STEP=clone
say "cloning $ROOT at $(git -C "$ROOT" log -1 --format='%h %s' "$REV" | cut -c1-72)"
say "into $C (parent $(stat -c '%a %U' "$D"), user $(id -un))"
git clone -q --no-checkout "$ROOT" "$C" || fail "git clone"
git -C "$C" checkout -q --detach "$REV" || fail "git checkout $REV"
modes >"$D/modes.before"

STEP="make up"
make_up
data=$(pg_datadir "$VAR")
if [ "$(id -u)" -eq 0 ]; then
    case "$data" in
    "$D"/*) fail "PostgreSQL data $data is inside the clone, which postgres cannot enter" ;;
    esac
    [ "$(stat -c '%U %a' "$data")" = "postgres 700" ] ||
        fail "$data is $(stat -c '%U %a' "$data"), not postgres 700"
    grep -q "data in $data" "$D/up.log" || fail "the summary does not say the data is in $data"
    say "PostgreSQL data in $data (postgres, 0700), outside the 0700 clone"
else
    say "not root: the server runs as $(id -un); PostgreSQL data in $data"
fi

STEP="noop job"
id=$(post /v1/jobs/noop '{}' | json_str id)
[ -n "$id" ] || fail "no job id in $(cat "$D/post.json")"
poll_json "$CONVEYOR_API_URL/v1/jobs/$id" '"status":"succeeded"' 30 || fail "job $id"
say "noop job $id succeeded"

STEP="activation"
tx=$(post /api/v1/activation/ '{"user_id":1,"offer_id":1}' | json_str transaction_id)
[ -n "$tx" ] || fail "no transaction_id in $(cat "$D/post.json")"
poll_json "$CONVEYOR_API_URL/api/v1/activation/status/$tx/" '"status":"SUCCESS"' 30 ||
    fail "activation $tx"
say "activation $tx SUCCESS"

STEP="make down"
make_down

STEP="make up again"
make_up
[ "$(pg_datadir "$VAR")" = "$data" ] || fail "the data moved: $(pg_datadir "$VAR"), was $data"
got=$(psql "$CONVEYOR_PG_DSN" -XtAq -c \
    "SELECT status FROM transactions WHERE transaction_id = '$tx'" 2>>"$D/psql.log") || got=
[ "$got" = SUCCESS ] || fail "transaction $tx after a restart: '${got}', want SUCCESS"
say "PostgreSQL found its data again: transaction $tx is $got"

STEP="make down again"
make_down
up_ran=0

STEP=permissions
while read -r mode dir; do
    now=$(stat -c '%a' "$dir")
    [ "$now" = "$mode" ] || fail "$dir changed from $mode to $now"
done <"$D/modes.before"
say "no directory of the clone changed its permissions ($D is still $(stat -c '%a' "$D"))"

status=0
