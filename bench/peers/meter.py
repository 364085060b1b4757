"""meter.py - how `make bench-peers` sees a peer's jobs end (bench/peers.sh).

Conveyor's bench reads its own job statuses; BullMQ and Celery keep none that say when a
job ended (Celery without a result backend keeps nothing), so their workers report it:
each worker process counts its finished jobs and, for jobs that carry their creation time
(data field "c", wall-clock ms), the submit->done latency, and adds them to two keys of
the peers' Redis every 20 ms in one pipeline (never once per job):
  peers:done   INCRBY  jobs finished
  peers:lat    RPUSH   latencies in ms
BullMQ's worker (bullmq_peer.js) does the same in JavaScript; the Celery worker imports
Meter from here. The driver side, run by bench/peers.sh:
  meter.py wait N TIMEOUT_S      until peers:done reaches N: prints "drain RATE jobs/s",
                                 timed from the first job that ended (as cvbench wait)
  meter.py latency N TIMEOUT_S   until peers:lat holds N values: prints p50 and p99 (ms)
  meter.py settle N TIMEOUT_S    until peers:done reaches N, then both keys deleted: the
                                 workers took their first jobs (a warm-up before latency)
Reads the peers' Redis from PEERS_REDIS_URL. Needs /usr/bin/python3 with Debian's
python3-redis (scripts/deps.sh peers).
"""
import os
import sys
import threading
import time

import redis

DONE_KEY = "peers:done"
LAT_KEY = "peers:lat"
FLUSH_S = 0.02


def connect():
    return redis.Redis.from_url(os.environ["PEERS_REDIS_URL"])


class Meter:
    """Counts finished jobs in this process; a daemon thread flushes every FLUSH_S.
    Thread-safe; the thread starts with the first job of each process (after a fork
    too: a prefork child gets its own)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pid = None
        self.done = 0
        self.lat = []

    def job_done(self, created_ms=None):
        now = time.time() * 1000.0
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.done, self.lat = 0, []
                threading.Thread(target=self._run, daemon=True).start()
            self.done += 1
            if created_ms is not None:
                self.lat.append(now - float(created_ms))

    def _run(self):
        r = connect()
        while True:
            time.sleep(FLUSH_S)
            with self.lock:
                done, lat = self.done, self.lat
                self.done, self.lat = 0, []
            if not done:
                continue
            p = r.pipeline(transaction=False)
            p.incrby(DONE_KEY, done)
            if lat:
                p.rpush(LAT_KEY, *("%.3f" % v for v in lat))
            p.execute()


def wait(n, timeout_s):
    r = connect()
    end = time.monotonic() + timeout_s
    first = None
    got = got0 = 0
    while time.monotonic() < end:
        got = int(r.get(DONE_KEY) or 0)
        if got and first is None:
            first, got0 = time.monotonic(), got
        if got >= n:
            break
        time.sleep(0.002)
    if got < n:
        sys.exit("meter: only %d of %d jobs ended in %d s" % (got, n, timeout_s))
    # timed from the first report (a worker's start is not part of the drain); the jobs of
    # that report ended before the clock started, so they are not counted either
    s = time.monotonic() - first
    if got == got0:
        sys.exit("meter: all %d jobs ended within one report: too few to time" % n)
    print("drain %.0f jobs/s (%d jobs in %.2f s)" % ((got - got0) / s, n, s))


def settle(n, timeout_s):
    r = connect()
    end = time.monotonic() + timeout_s
    while int(r.get(DONE_KEY) or 0) < n:
        if time.monotonic() >= end:
            sys.exit("meter: the workers ended no %d jobs in %d s" % (n, timeout_s))
        time.sleep(0.01)
    r.delete(DONE_KEY, LAT_KEY)


def latency(n, timeout_s):
    r = connect()
    end = time.monotonic() + timeout_s
    while r.llen(LAT_KEY) < n:
        if time.monotonic() >= end:
            sys.exit("meter: only %d of %d latencies in %d s" % (r.llen(LAT_KEY), n, timeout_s))
        time.sleep(0.01)
    lat = sorted(float(v) for v in r.lrange(LAT_KEY, 0, -1))
    print("submit_to_done_p50 %.1f ms" % lat[len(lat) // 2])
    print("submit_to_done_p99 %.1f ms" % lat[min(len(lat) * 99 // 100, len(lat) - 1)])


if __name__ == "__main__":
    modes = {"wait": wait, "latency": latency, "settle": settle}
    if len(sys.argv) == 4 and sys.argv[1] in modes:
        modes[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: meter.py wait|latency|settle N TIMEOUT_S")
