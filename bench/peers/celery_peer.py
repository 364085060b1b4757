"""celery_peer.py - Celery's side of `make bench-peers` (bench/peers.sh drives it).

The Celery app (Redis broker, no result backend: task_ignore_result, as Celery ships) with
two tasks, and the producer side of each workload:
  celery_peer.py one N THREADS        N noop.apply_async(), one at a time in each of THREADS
                                      threads; prints "submit RATE jobs/s"
  celery_peer.py bulk TYPE N THREADS  N jobs (noop or activation) as groups of 1000, the
                                      groups shared by THREADS threads:
                                      group(...).apply_async() publishes one message per job
                                      through one producer (Celery has no bulk publish)
(bench/peers.sh uses one thread: more publish slower here, with the GIL and one producer
pool: 2500 jobs/s from one, 1200 from four.)
  celery_peer.py latency N RATE       N noop jobs at RATE/s, open loop, each carrying its
                                      wall-clock creation time (kwarg c, ms); prints the
                                      rate reached (meter.py reads the latencies)
The worker: /usr/bin/python3 -m celery -A celery_peer worker ... (bench/peers.sh names the
pool and flags it uses). Each finished job is reported to meter.Meter.

activation is the same work as one Conveyor activation in PostgreSQL and Redis, one job at a
time: one PostgreSQL transaction calling Conveyor's own cv_activation_reserve (debit,
transactions row) and cv_activation_finish (SUCCESS, user_offers row) for the one
transaction, then HSET transaction:<id> with the fields Conveyor's worker writes, and its
EXPIRE (24 h, Conveyor's status TTL). Conveyor's worker also calls the activation system
(the simulator) over HTTP between the two; this does not.

Environment: PEERS_REDIS_URL, PEERS_PG_DSN. Needs Debian's python3-celery, python3-redis and
python3-psycopg2 for /usr/bin/python3 (scripts/deps.sh peers).
"""
import datetime
import os
import sys
import threading
import time
import uuid

import psycopg2
from celery import Celery, group

import meter

app = Celery("peers", broker=os.environ["PEERS_REDIS_URL"])
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)
METER = meter.Meter()
STATUS_TTL_S = 86400

RESERVE = ("SELECT outcome, status, amount::text, coalesce(error, '') FROM "
           "cv_activation_reserve(ARRAY[%s]::uuid[], ARRAY[%s]::bigint[], "
           "ARRAY[%s]::bigint[], ARRAY[1]::bigint[])")
FINISH = ("SELECT status FROM cv_activation_finish(ARRAY[%s]::uuid[], ARRAY[true], "
          "ARRAY[1]::bigint[], ARRAY['']::text[])")

_local = threading.local()      # one PostgreSQL connection per worker thread
_redis = None                   # one client (its pool is thread-safe) per process


def _pg():
    c = getattr(_local, "pg", None)
    if c is None or c.closed:
        c = _local.pg = psycopg2.connect(os.environ["PEERS_PG_DSN"])
    return c


@app.task(name="noop")
def noop(c=None):
    METER.job_done(c)


@app.task(name="activation")
def activation(transaction_id, user_id, offer_id, c=None):
    try:
        _activate(transaction_id, user_id, offer_id)
    finally:                    # ended either way (bench/peers.sh counts the SUCCESS rows)
        METER.job_done(c)


def _activate(transaction_id, user_id, offer_id):
    global _redis
    conn = _pg()
    with conn:                  # one transaction: COMMIT on success, ROLLBACK on error
        with conn.cursor() as cur:
            cur.execute(RESERVE, (transaction_id, user_id, offer_id))
            outcome, status, amount, error = cur.fetchone()
            if outcome == "proceed":
                cur.execute(FINISH, (transaction_id,))
                status = cur.fetchone()[0]
    if _redis is None:
        _redis = meter.connect()
    key = "transaction:" + transaction_id
    p = _redis.pipeline(transaction=False)
    p.hset(key, mapping={
        "transaction_id": transaction_id, "lease_epoch": 1, "status": status,
        "user_id": user_id, "offer_id": offer_id, "amount": amount, "error": error,
        "updated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
    })
    p.expire(key, STATUS_TTL_S)
    p.execute()
    if status != "SUCCESS":
        raise RuntimeError("activation %s: %s %s" % (transaction_id, status, error))


def _rate(n, t0):
    s = time.monotonic() - t0
    print("submit %.0f jobs/s (%d jobs in %.2f s)" % (n / s, n, s))


def _connect():
    """the producer pool's first connection, made before a clock starts"""
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()


def _threads(k, threads, step):
    """step(i) for i in range(k), spread over `threads` threads; returns the start time"""
    _connect()
    parts = [range(t, k, threads) for t in range(threads)]
    ts = [threading.Thread(target=lambda part=part: [step(i) for i in part]) for part in parts]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return t0


def one(n, threads):
    _rate(n, _threads(n, threads, lambda i: noop.apply_async()))


def bulk(kind, n, threads):
    def sig(i):
        if kind == "activation":
            return activation.s(str(uuid.uuid4()), 1 + i % 100, 1)
        return noop.s()

    def step(b):
        group(sig(i) for i in range(b * 1000, min(n, (b + 1) * 1000))).apply_async()
    _rate(n, _threads((n + 999) // 1000, threads, step))


def latency(n, rate):
    _connect()
    t0 = time.monotonic()
    for i in range(n):
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        noop.apply_async(kwargs={"c": time.time() * 1000.0})
    _rate(n, t0)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "one":
        one(int(a[1]), int(a[2]))
    elif len(a) == 4 and a[0] == "bulk" and a[1] in ("noop", "activation"):
        bulk(a[1], int(a[2]), int(a[3]))
    elif len(a) == 3 and a[0] == "latency":
        latency(int(a[1]), int(a[2]))
    else:
        sys.exit("usage: celery_peer.py one N THREADS | bulk noop|activation N THREADS | "
                 "latency N RATE")
