'use strict';
/* bullmq_peer.js - BullMQ's side of `make bench-peers` (bench/peers.sh drives it).
 *
 *   node bullmq_peer.js one N CONC         N queue.add() of noop jobs, CONC in flight at once
 *                                          (one connection, as a BullMQ producer does);
 *                                          prints "submit RATE jobs/s"
 *   node bullmq_peer.js bulk TYPE N CONC   N jobs (noop or activation) by queue.addBulk()
 *                                          of 1000, CONC calls in flight
 *   node bullmq_peer.js latency N RATE     N noop jobs at RATE/s, open loop, each carrying
 *                                          its wall-clock creation time (data.c, ms); prints
 *                                          the rate reached (meter.py reads the latencies)
 *   node bullmq_peer.js work TYPE CONC     a Worker with concurrency CONC until SIGTERM;
 *                                          reports finished jobs as meter.py describes
 *
 * Queues and jobs as BullMQ ships them: job options left at their defaults (one attempt,
 * completed jobs kept in the queue's completed set), queue named after the type.
 *
 * activation is the same work as one Conveyor activation in PostgreSQL and Redis, one job
 * at a time: one PostgreSQL transaction calling Conveyor's own cv_activation_reserve (debit,
 * transactions row) and cv_activation_finish (SUCCESS, user_offers row) for the one
 * transaction, then HSET transaction:<id> with the fields Conveyor's worker writes, and its
 * EXPIRE (24 h, Conveyor's status TTL). Conveyor's worker also calls the activation system
 * (the simulator) over HTTP between the two; this does not. A pg.Pool of CONC connections.
 *
 * Environment: PEERS_REDIS_URL, PEERS_PG_DSN; NODE_PATH=build/peers/node_modules (npm puts
 * bench/peers/package.json's exact versions there). */
const { randomUUID } = require('crypto');
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const url = new URL(process.env.PEERS_REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
const DONE_KEY = 'peers:done';
const LAT_KEY = 'peers:lat';
const FLUSH_MS = 20;
const STATUS_TTL_S = 86400;

const RESERVE =
    'SELECT outcome, status, amount::text AS amount, coalesce(error, \'\') AS error FROM ' +
    'cv_activation_reserve(ARRAY[$1]::uuid[], ARRAY[$2]::bigint[], ARRAY[$3]::bigint[], ' +
    'ARRAY[1]::bigint[])';
const FINISH =
    'SELECT status FROM cv_activation_finish(ARRAY[$1]::uuid[], ARRAY[true], ' +
    'ARRAY[1]::bigint[], ARRAY[\'\']::text[])';

const nowMs = () => performance.timeOrigin + performance.now();

function printRate(n, t0) {
    const s = (performance.now() - t0) / 1000;
    console.log(`submit ${Math.round(n / s)} jobs/s (${n} jobs in ${s.toFixed(2)} s)`);
}

function data(type, i) {
    if (type === 'activation')
        return { transaction_id: randomUUID(), user_id: 1 + (i % 100), offer_id: 1 };
    return {};
}

// run `next(i)` for i in [0, n) with at most conc promises in flight
async function inFlight(n, conc, next) {
    let i = 0;
    const lane = async () => {
        while (i < n)
            await next(i++);
    };
    await Promise.all(Array.from({ length: Math.min(conc, n) }, lane));
}

async function one(n, conc) {
    const q = new Queue('noop', { connection });
    await q.waitUntilReady();
    const t0 = performance.now();
    await inFlight(n, conc, () => q.add('noop', {}));
    printRate(n, t0);
    await q.close();
}

async function bulk(type, n, conc) {
    const q = new Queue(type, { connection });
    await q.waitUntilReady();
    const t0 = performance.now();
    await inFlight(Math.ceil(n / 1000), conc, (b) => {
        const jobs = [];
        for (let i = b * 1000; i < Math.min(n, (b + 1) * 1000); i++)
            jobs.push({ name: type, data: data(type, i) });
        return q.addBulk(jobs);
    });
    printRate(n, t0);
    await q.close();
}

async function latency(n, rate) {
    const q = new Queue('noop', { connection });
    await q.waitUntilReady();
    const t0 = performance.now();
    const pending = [];
    for (let i = 0; i < n; i++) {
        const wait = t0 + (i * 1000) / rate - performance.now();
        if (wait > 0)
            await new Promise((res) => setTimeout(res, wait));
        pending.push(q.add('noop', { c: nowMs() }));   // not awaited: open loop
    }
    await Promise.all(pending);
    printRate(n, t0);
    await q.close();
}

// The worker's report (meter.py): counts in this process, one pipeline every FLUSH_MS.
function meter() {
    const r = new IORedis(connection);
    let done = 0;
    let lat = [];
    const flush = async () => {
        if (!done)
            return;
        const p = r.pipeline().incrby(DONE_KEY, done);
        if (lat.length)
            p.rpush(LAT_KEY, ...lat.map((v) => v.toFixed(3)));
        done = 0;
        lat = [];
        await p.exec();
    };
    const timer = setInterval(flush, FLUSH_MS);
    return {
        r,
        jobDone(c) {
            done++;
            if (c !== undefined)
                lat.push(nowMs() - c);
        },
        async close() {
            clearInterval(timer);
            await flush();
            r.disconnect();
        },
    };
}

async function activate(pool, r, d) {
    const c = await pool.connect();
    let row;
    try {
        await c.query('BEGIN');
        row = (await c.query(RESERVE, [d.transaction_id, d.user_id, d.offer_id])).rows[0];
        if (row.outcome === 'proceed')
            row.status = (await c.query(FINISH, [d.transaction_id])).rows[0].status;
        await c.query('COMMIT');
    } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        throw e;
    } finally {
        c.release();
    }
    const key = `transaction:${d.transaction_id}`;
    await r.pipeline()
        .hset(key, {
            transaction_id: d.transaction_id, lease_epoch: 1, status: row.status,
            user_id: d.user_id, offer_id: d.offer_id, amount: row.amount, error: row.error,
            updated_at: new Date().toISOString(),
        })
        .expire(key, STATUS_TTL_S)
        .exec();
    if (row.status !== 'SUCCESS')
        throw new Error(`activation ${d.transaction_id}: ${row.status} ${row.error}`);
}

async function work(type, conc) {
    const m = meter();
    let pool = null;
    let proc = async () => {};
    if (type === 'activation') {
        const { Pool } = require('pg');
        pool = new Pool({ connectionString: process.env.PEERS_PG_DSN, max: conc });
        proc = (job) => activate(pool, m.r, job.data);
    }
    const w = new Worker(type, proc, { connection, concurrency: conc });
    // a job has ended once BullMQ moved it to completed or failed
    w.on('completed', (job) => m.jobDone(job.data.c));
    w.on('failed', (job, err) => {
        console.error(`job ${job && job.id} failed: ${err.message}`);
        m.jobDone(job && job.data.c);
    });
    w.on('error', (err) => console.error(`worker: ${err.message}`));
    process.on('SIGTERM', async () => {
        await w.close();
        await m.close();
        if (pool)
            await pool.end();
        process.exit(0);
    });
}

const [cmd, ...a] = process.argv.slice(2);
const usage = 'usage: bullmq_peer.js one N CONC | bulk noop|activation N CONC | ' +
    'latency N RATE | work noop|activation CONC';
const types = ['noop', 'activation'];
let run = null;
if (cmd === 'one' && a.length === 2)
    run = one(Number(a[0]), Number(a[1]));
else if (cmd === 'bulk' && a.length === 3 && types.includes(a[0]))
    run = bulk(a[0], Number(a[1]), Number(a[2]));
else if (cmd === 'latency' && a.length === 2)
    run = latency(Number(a[0]), Number(a[1]));
else if (cmd === 'work' && a.length === 2 && types.includes(a[0]))
    run = work(a[0], Number(a[1]));
if (!run) {
    console.error(usage);
    process.exit(2);
}
run.catch((e) => {
    console.error(e);
    process.exit(1);
});
