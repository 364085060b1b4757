#!/usr/bin/env bash
# tests/chaos/selftest.sh - prove that `cv-chaos check` catches what it claims to catch.
#
# Run by run-chaos.sh when CHAOS_SELFTEST=1, after the real check, while its stack still runs
# (env: T, TOOL, JOBS, SIM_URL, CONVEYOR_PG_DSN, CONVEYOR_REDIS_URL). It records the check's
# verdicts as a baseline, then plants one defect at a time in Redis, PostgreSQL or the
# simulator (a job that never finished, a lost job, a job that contradicts its transaction,
# money moved without a status change, a second debit, held money, a dead letter missing,
# a job dead before its last attempt, a noop dead, an activation the simulator made for no
# transaction or for a rejected one; with ORDERS > 0 also an order stuck in TRACKED, a move
# that is not an order_edges row, a tracking event left kept, a completing job that failed,
# a FAILED order without its reason, and at the simulator a second shipment for one
# reference and a second OR24) and asserts that the invariant meant to catch it now
# fails, or fails with a different count when it already failed. Every defect but the
# simulator ones is undone, and the verdicts must then equal the baseline again; the
# simulator ones cannot be undone and come last. Exit 0 when every case was caught.
set -euo pipefail
: "${T:?}" "${TOOL:?}" "${JOBS:?}" "${SIM_URL:?}" "${CONVEYOR_PG_DSN:?}" "${CONVEYOR_REDIS_URL:?}"
ORDERS=${ORDERS:-0}

OUT=$T/selftest
mkdir -p "$OUT"
REDIS_PORT=${CONVEYOR_REDIS_URL##*:}
fails=0 cases=0

sql() { psql "$CONVEYOR_PG_DSN" -XtAq -v ON_ERROR_STOP=1 -c "$1"; }
rcli() { redis-cli -p "$REDIS_PORT" "$@" >/dev/null; }

check() { # NAME -> $OUT/NAME.out
    "$TOOL" check --acked "$T/acked.tsv" --jobs "$JOBS" --sim "$SIM_URL" --drain-s 0 \
        --held-wait-s 0 --orders "$ORDERS" >"$OUT/$1.out" 2>"$OUT/$1.err" || true
}

# expect CASE INVARIANT...: each INVARIANT (the start of its verdict line) fails in CASE's
# output, with a line other than the baseline's.
expect() {
    local case=$1 inv line base ok=1
    shift
    cases=$((cases + 1))
    for inv in "$@"; do
        line=$(grep -F "FAIL  $inv" "$OUT/$case.out" || true)
        base=$(grep -F "$inv" "$OUT/baseline.out" || true)
        if [ -z "$line" ] || [ "$line" = "$base" ]; then
            echo "selftest: FAIL $case: '$inv' did not catch it"
            ok=0
        fi
    done
    if [ $ok = 1 ]; then echo "selftest: PASS $case"; else fails=$((fails + 1)); fi
}

verdicts() { grep -E '^(PASS|FAIL)  ' "$1" | sed 's/:.*//'; }

TERMINAL="every acknowledged job is terminal"
AGREE="activation job state agrees with its transaction"
BALANCE="balance = initial - price x successes"
DEBITS="one debit and at most one refund per transaction"
SIM="one activation per transaction at the simulator"
HELD="held money zero"
DEAD="dead letters ="
OUTAGE="no attempt spent on our own outage"
O_END="every order ends COMPLETE"
O_SHIP="exactly one shipment per order reference"
O_MIRAKL="at most one OR24 per order"
O_EDGES="no order moved backwards"
O_JOBS="order jobs agree with their orders"
O_PENDING="nothing lost: no tracking event left"

check baseline
NOOP=$(sql "SELECT id FROM chaos_jobs WHERE type = 'noop' AND state = 'succeeded' LIMIT 1")
# (a long run can drain accounts: the corruptions below debit, and balances may not go
# negative, so they pick accounts that can pay)
OK=$(sql "SELECT j.id FROM chaos_jobs j JOIN transactions t ON t.transaction_id = j.id
          JOIN accounts a ON a.user_id = t.user_id
          WHERE j.state = 'succeeded' AND t.status = 'SUCCESS' AND a.balance >= t.amount LIMIT 1")
RICH=$(sql "SELECT user_id FROM accounts WHERE balance >= 6 ORDER BY balance DESC LIMIT 1")
REJ=$(sql "SELECT j.id FROM chaos_jobs j JOIN transactions t ON t.transaction_id = j.id
           WHERE j.state = 'failed' AND j.in_dead AND t.status = 'FAILED'
           ORDER BY (t.error = 'insufficient balance') DESC LIMIT 1")
if [ -z "$NOOP" ] || [ -z "$OK" ] || [ -z "$REJ" ] || [ -z "$RICH" ]; then
    echo "selftest: the run has no succeeded noop, succeeded activation (of an account"
    echo "that can pay), failed activation or account with 6.00 left"
    exit 2
fi

rcli HSET "cv:job:$NOOP" state running
check unfinished
expect unfinished "$TERMINAL"
rcli HSET "cv:job:$NOOP" state succeeded

rcli RENAME "cv:job:$NOOP" cv:selftest:hidden
check lost
expect lost "$TERMINAL"
rcli RENAME cv:selftest:hidden "cv:job:$NOOP"

rcli HSET "cv:job:$OK" state failed
rcli ZADD cv:dead 1 "$OK"
check contradicts
expect contradicts "$AGREE" "$DEAD"
rcli HSET "cv:job:$OK" state succeeded
rcli ZREM cv:dead "$OK"

# Audit rows written by a case and by its undo are removed after the undo: the audit then
# reads as if nothing happened.
marks() { read -r TXSEQ LEDSEQ < <(sql "SELECT (SELECT coalesce(max(seq), 0) FROM chaos_txlog),
    (SELECT coalesce(max(seq), 0) FROM chaos_ledger)" | tr '|' ' '); }
unmark() {
    sql "DELETE FROM chaos_txlog WHERE seq > $TXSEQ; DELETE FROM chaos_ledger WHERE seq > $LEDSEQ"
}

marks
sql "UPDATE accounts SET balance = balance - 1 WHERE user_id = $RICH"
check stolen
expect stolen "$BALANCE" "$DEBITS"
sql "UPDATE accounts SET balance = balance + 1 WHERE user_id = $RICH"
unmark

marks
sql "BEGIN;
     UPDATE transactions SET status = 'PROCESSING' WHERE transaction_id = '$OK';
     UPDATE accounts a SET balance = a.balance - t.amount FROM transactions t
      WHERE t.transaction_id = '$OK' AND a.user_id = t.user_id;
     UPDATE transactions SET status = 'SUCCESS' WHERE transaction_id = '$OK';
     COMMIT"
check debit-twice
expect debit-twice "$DEBITS" "$BALANCE"
sql "UPDATE accounts a SET balance = a.balance + t.amount FROM transactions t
      WHERE t.transaction_id = '$OK' AND a.user_id = t.user_id"
unmark

marks
HELDID=$(cat /proc/sys/kernel/random/uuid)
sql "BEGIN;
     INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status)
     VALUES ('$HELDID', $RICH, 1, 5.00, 'PROCESSING');
     UPDATE accounts SET balance = balance - 5.00 WHERE user_id = $RICH;
     COMMIT"
check held
expect held "$HELD" "$BALANCE"
sql "BEGIN; DELETE FROM transactions WHERE transaction_id = '$HELDID';
     UPDATE accounts SET balance = balance + 5.00 WHERE user_id = $RICH; COMMIT"
unmark

SCORE=$(redis-cli -p "$REDIS_PORT" ZSCORE cv:dead "$REJ")
rcli ZREM cv:dead "$REJ"
check unlisted
expect unlisted "$DEAD"
rcli ZADD cv:dead "$SCORE" "$REJ"

rcli HSET "cv:job:$REJ" state dead
check dead-early
expect dead-early "$DEAD" "$AGREE"
rcli HSET "cv:job:$REJ" state failed

rcli HSET "cv:job:$NOOP" state dead attempt 5 max_attempts 5
rcli ZADD cv:dead 1 "$NOOP"
check noop-dead
expect noop-dead "$OUTAGE"
rcli HSET "cv:job:$NOOP" state succeeded attempt 1
rcli ZREM cv:dead "$NOOP"

if [ "$ORDERS" -gt 0 ]; then
    # an order, the job that completed it, and one that ended FAILED_* (a replay may have
    # completed them all: then that case is skipped)
    read -r ORD PUSHJOB < <(sql "SELECT o.order_id, x.job_id FROM orders o JOIN operations x
        USING (order_id) WHERE o.internal_state = 'COMPLETE' AND x.to_state = 'COMPLETE'
        AND x.status <> 'REFUSED' ORDER BY o.order_id LIMIT 1" | tr '|' ' ')
    [ -n "$ORD" ] || { echo "selftest: the run has no COMPLETE order"; exit 2; }

    sql "UPDATE orders SET internal_state = 'TRACKED' WHERE order_id = '$ORD'"
    check order-stuck
    expect order-stuck "$O_END" "$O_EDGES"
    sql "UPDATE orders SET internal_state = 'COMPLETE' WHERE order_id = '$ORD'"

    # operations is append-only (a trigger): the undo switches the trigger off for its DELETE
    sql "INSERT INTO operations (scope, action, order_id, status, from_state, to_state)
         VALUES ('selftest', 'backwards', '$ORD', 'OK', 'COMPLETE', 'PENDING_POST')"
    check order-backwards
    expect order-backwards "$O_EDGES"
    sql "BEGIN; ALTER TABLE operations DISABLE TRIGGER operations_append_only;
         DELETE FROM operations WHERE scope = 'selftest';
         ALTER TABLE operations ENABLE TRIGGER operations_append_only; COMMIT"

    sql "INSERT INTO tracking_pending (order_id, carrier, status, event_at)
         VALUES ('$ORD', 'seur', 'DELIVERED', now())"
    check order-kept
    expect order-kept "$O_PENDING"
    sql "DELETE FROM tracking_pending WHERE order_id = '$ORD'"

    rcli HSET "cv:job:$PUSHJOB" state failed
    check order-job
    expect order-job "$O_JOBS"
    rcli HSET "cv:job:$PUSHJOB" state succeeded

    ERR=$(sql "SELECT coalesce(last_error, '') FROM orders WHERE order_id = '$ORD'")
    sql "UPDATE orders SET internal_state = 'FAILED_PUSH', last_error = NULL
         WHERE order_id = '$ORD'"
    check order-no-reason
    expect order-no-reason "$O_END"
    # (psql interpolates :'err' only in what it reads, not in -c)
    psql "$CONVEYOR_PG_DSN" -XtAq -v ON_ERROR_STOP=1 -v err="$ERR" <<EOF
UPDATE orders SET internal_state = 'COMPLETE', last_error = nullif(:'err', '')
 WHERE order_id = '$ORD';
EOF
fi

check undone
cases=$((cases + 1))
if [ "$(verdicts "$OUT/undone.out")" = "$(verdicts "$OUT/baseline.out")" ]; then
    echo "selftest: PASS every defect undone: the verdicts equal the baseline again"
else
    echo "selftest: FAIL the verdicts differ from the baseline after the undo"
    diff <(verdicts "$OUT/baseline.out") <(verdicts "$OUT/undone.out") || true
    fails=$((fails + 1))
fi

# The simulator keeps what it was told: these two come last (no injected errors now).
curl -fsS -o /dev/null -X POST "$SIM_URL/admin/config" -H 'Content-Type: application/json' \
    -d '{"error_rate":0}'
curl -fsS -o /dev/null -X POST "$SIM_URL/activate" -H 'Content-Type: application/json' \
    -d "{\"transaction_id\":\"$(cat /proc/sys/kernel/random/uuid)\",\"user_id\":1,\"offer_id\":1}"
check stray-activation
expect stray-activation "$SIM"

if [ "$(sql "SELECT error FROM transactions WHERE transaction_id = '$REJ'")" = \
    "insufficient balance" ]; then
    curl -fsS -o /dev/null -X POST "$SIM_URL/activate" -H 'Content-Type: application/json' \
        -d "{\"transaction_id\":\"$REJ\",\"user_id\":1,\"offer_id\":1}"
    check rejected-activated
    expect rejected-activated "$SIM"
else
    echo "selftest: skip rejected-activated: no activation was rejected for its balance"
fi

if [ "$ORDERS" -gt 0 ]; then
    # the carriers and Mirakl keep what they were told, too
    for sys in mirakl cex; do
        curl -fsS -o /dev/null -X POST "$SIM_URL/admin/$sys/faults" \
            -H 'Content-Type: application/json' -d '{"error_rate":0}'
    done
    curl -fsS -o /dev/null -u cex-demo-user:cex-demo-password -X POST \
        "$SIM_URL/cex/WSEnvio_REST/grabacionEnvio" -H 'Content-Type: application/json' \
        -d "{\"ref\":\"$ORD\",\"codPosNacDest\":\"28013\",\"paisISODest\":\"ES\"}"
    check second-shipment
    expect second-shipment "$O_SHIP"

    # answered 400 ORDER_INVALID_STATE (shipped already), and counted
    curl -sS -o /dev/null -X PUT "$SIM_URL/mirakl/api/orders/$ORD/ship" \
        -H "Authorization: $CONVEYOR_UPSTREAMS_MIRAKL_AUTH_SECRET" || true
    check second-or24
    expect second-or24 "$O_MIRAKL"
fi

echo "selftest: $((cases - fails)) of $cases cases caught; outputs in $OUT"
[ "$fails" -eq 0 ]
