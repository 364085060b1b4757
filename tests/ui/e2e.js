/* tests/ui/e2e.js - the dashboard end to end in headless Chromium (tests/ui/run.sh starts
 * the stack and passes it here; run it through `make ui-test`).
 *
 * Every wait polls the page or the API until a deadline (Playwright's waitForFunction and
 * expectations with timeouts, or poll() below): no fixed sleeps. A watchdog ends the run
 * when UI_DEADLINE_MS passes, whatever hangs. Each step that shows something saves a
 * screenshot in UI_SHOTS; a failure saves failure.png and prints the step.
 *
 * Env: UI_API_URL, UI_SIM_URL, UI_OPS_KEY (operator and orders scopes), UI_PRODUCER_KEY
 * (noop and activation: submits jobs, and must be refused by the login), UI_SHOTS,
 * UI_DEADLINE_MS, UI_CHROMIUM (/usr/bin/chromium), UI_HEADED=1. */
'use strict';

const path = require('path');
const { chromium } = require('playwright-core');

const env = (name) => {
    const v = process.env[name];
    if (!v) throw new Error('missing env ' + name);
    return v;
};
const API = env('UI_API_URL');
const SIM = env('UI_SIM_URL');
const OPS_KEY = env('UI_OPS_KEY');
const PRODUCER_KEY = env('UI_PRODUCER_KEY');
const SHOTS = env('UI_SHOTS');
const DEADLINE_MS = Number(process.env.UI_DEADLINE_MS || 240000);
const STEP_MS = 20000;             /* the longest any single wait may take */

const watchdog = setTimeout(() => {
    console.error('e2e: the run did not finish within ' + DEADLINE_MS + ' ms');
    process.exit(3);
}, DEADLINE_MS);

let step = 'start';
function say(s) {
    step = s;
    console.log('e2e: ' + s);
}

function check(cond, msg) {
    if (!cond) throw new Error('check failed: ' + msg);
}

/* Call fn until it returns a truthy value; that value, or an error after ms. */
async function poll(what, fn, ms = STEP_MS, every = 100) {
    const end = Date.now() + ms;
    let last;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            last = e;
        }
        if (Date.now() > end)
            throw new Error('timed out waiting for ' + what + (last ? ': ' + last.message : ''));
        await new Promise((r) => setTimeout(r, every));
    }
}

/* ---- the API directly (a producer submitting work, the simulator's fault knobs) -------- */

async function apiCall(method, p, body, headers = {}) {
    const res = await fetch(API + p, {
        method,
        headers: { 'Content-Type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
    return { status: res.status, json, text };
}

const producer = { Authorization: 'Bearer ' + PRODUCER_KEY };
const operator = { Authorization: 'Bearer ' + OPS_KEY };

async function simFaults(faults) {
    const res = await fetch(SIM + '/admin/config', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(faults),
    });
    check(res.status === 200, 'sim /admin/config ' + res.status);
}

async function jobStatus(id) {
    const r = await apiCall('GET', '/v1/jobs/' + id, undefined, operator);
    return r.status === 200 ? r.json.status : 'http ' + r.status;
}

async function activation(user, offer, attempts) {
    const r = await apiCall('POST', '/api/v1/activation/?max_attempts=' + attempts,
        { user_id: user, offer_id: offer }, producer);
    check(r.status === 202, 'activation ' + r.status + ' ' + r.text);
    return r.json.transaction_id;
}

/* ---- the page -------------------------------------------------------------------------- */

async function shot(page, name) {
    await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
}

/* The number in a cell of the queues table (the type's row; NaN until it exists). */
async function cell(page, type, cls) {
    return page.evaluate(([t, c]) => {
        const td = document.querySelector('#queues-table tr[data-type="' + t + '"] td.' + c);
        return td ? Number(td.textContent.replace(/,/g, '')) : NaN;
    }, [type, cls]);
}

async function main() {
    const exe = process.env.UI_CHROMIUM || '/usr/bin/chromium';
    const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
    const browser = await chromium.launch({ executablePath: exe, headless: !process.env.UI_HEADED, args });
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    /* any script error or CSP refusal on the page fails the run */
    const problems = [];
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => {
        if (m.type() === 'error' && !/status of 40[134]/.test(m.text())) problems.push('console: ' + m.text());
    });

    try {
        say('the login form is shown to a new visitor');
        await page.goto(API + '/ui');
        await page.waitForSelector('#login-form', { state: 'visible' });
        check(await page.isHidden('#nav'), 'no navigation before login');
        await shot(page, '01-login');

        say('a wrong key is refused');
        await page.fill('#login-key', 'not-a-key');
        await page.click('#login-form button[type=submit]');
        await page.waitForFunction(() => /Unknown key/.test(document.querySelector('#login-error').textContent));

        say('a key without the operator scope is refused');
        await page.fill('#login-key', PRODUCER_KEY);
        await page.click('#login-form button[type=submit]');
        await page.waitForFunction(() => /operator scope/.test(document.querySelector('#login-error').textContent));
        check((await context.cookies()).every((c) => c.name !== 'cv_session'), 'no cookie for a refused key');

        say('the operator key logs in');
        await page.fill('#login-key', OPS_KEY);
        await page.click('#login-form button[type=submit]');
        await page.waitForSelector('#nav', { state: 'visible' });
        await page.waitForFunction(() => document.querySelector('#live-status').classList.contains('live'));
        check((await page.inputValue('#login-key')) === '', 'the page does not keep the key');
        const cookie = (await context.cookies()).find((c) => c.name === 'cv_session');
        check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/',
            'cookie flags: ' + JSON.stringify(cookie));
        check(!cookie.value.includes(OPS_KEY), 'the cookie is not the key');
        check(!(await page.evaluate(() => document.cookie)).includes('cv_session'),
            'scripts cannot read the session cookie');

        say('queue numbers move as jobs flow');
        const before = await cell(page, 'noop', 'enqueued');
        const base = Number.isNaN(before) ? 0 : before;
        /* slow jobs first: "running" rises while they run, then falls */
        let r = await apiCall('POST', '/v1/jobs/noop/batch', Array(6).fill({ sleep_ms: 4000 }), producer);
        check(r.status === 202, 'batch ' + r.status + ' ' + r.text);
        await poll('running noop jobs on the page', async () => (await cell(page, 'noop', 'running')) > 0);
        await shot(page, '02-queues-running');
        r = await apiCall('POST', '/v1/jobs/noop/batch', Array(200).fill({}), producer);
        check(r.status === 202, 'batch ' + r.status);
        await poll('206 more enqueued on the page', async () => (await cell(page, 'noop', 'enqueued')) >= base + 206);
        await poll('206 more succeeded on the page', async () => (await cell(page, 'noop', 'succeeded')) >= base + 206);
        await poll('running back to 0', async () => (await cell(page, 'noop', 'running')) === 0);
        await poll('a sparkline drawn', () => page.evaluate(() =>
            !!document.querySelector('#queues-table tr[data-type="noop"] canvas.spark')));
        await shot(page, '03-queues-after');

        say('workers are listed live');
        await page.click('#nav a[data-page=workers]');
        await page.waitForFunction(() => document.querySelectorAll('#workers-table tbody tr').length === 1);
        check(/1 live/.test(await page.textContent('#workers-summary')), 'one live worker');
        await shot(page, '04-workers');

        say('two jobs go dead: one held (the activation system fails), one not (no money)');
        await simFaults({ error_rate: 1 });
        const heldTxn = await activation(5, 1, 1);
        const poorTxn = await activation(9, 1, 1);     /* run.sh left user 9 with 4.00 */
        await poll('both dead', async () => (await jobStatus(heldTxn)) === 'dead' &&
            (await jobStatus(poorTxn)) === 'failed');
        await page.click('#nav a[data-page=dead]');
        for (const id of [heldTxn, poorTxn])
            await page.waitForSelector('#dead-table tr[data-id="' + id + '"]');
        await shot(page, '05-dead');

        say('search filters the dead letters');
        await page.fill('#dead-search', poorTxn.slice(0, 13));
        await page.waitForFunction((id) => {
            const rows = [...document.querySelectorAll('#dead-table tbody tr')];
            return rows.length === 1 && rows[0].dataset.id === id;
        }, poorTxn);
        await page.fill('#dead-search', 'insufficient balance');
        await page.waitForFunction((id) => [...document.querySelectorAll('#dead-table tbody tr')]
            .every((tr) => tr.dataset.id === id), poorTxn);
        await page.fill('#dead-search', 'no-such-text-anywhere');
        await page.waitForFunction(() => document.querySelectorAll('#dead-table tbody tr').length === 0);
        await page.fill('#dead-search', '');
        await page.selectOption('#dead-type', 'activation');
        await page.waitForSelector('#dead-table tr[data-id="' + heldTxn + '"]');

        say('a dead job is inspected: payload and error');
        await page.click('#dead-table tr[data-id="' + poorTxn + '"]');
        await page.waitForSelector('#dead-inspect', { state: 'visible' });
        check((await page.textContent('#dead-inspect-payload')).includes('"user_id": 9'), 'payload shown');
        check(/insufficient balance/.test(await page.textContent('#dead-inspect-error')), 'error shown');
        await shot(page, '06-inspect');

        say('purge asks first: cancel keeps the job, confirm deletes it');
        await page.click('#dead-purge');
        await page.waitForSelector('#purge-dialog[open]');
        check((await page.textContent('#purge-dialog-id')) === poorTxn, 'the dialog names the job');
        await shot(page, '07-purge-dialog');
        await page.click('#purge-cancel');
        await page.waitForSelector('#purge-dialog', { state: 'hidden' });
        check((await jobStatus(poorTxn)) === 'failed', 'cancel purged nothing');
        await page.click('#dead-purge');
        await page.click('#purge-confirm');
        await page.waitForFunction(() => /Purged/.test(document.querySelector('#dead-action-msg').textContent));
        await page.waitForSelector('#dead-table tr[data-id="' + poorTxn + '"]', { state: 'detached' });
        check((await jobStatus(poorTxn)) === 'http 404', 'purged for good');

        say('a held job cannot be purged; the held money page lists it');
        await page.click('#dead-table tr[data-id="' + heldTxn + '"]');
        await page.waitForFunction((id) => document.querySelector('#dead-inspect-id').textContent === id, heldTxn);
        check(await page.isDisabled('#dead-purge'), 'purge disabled while held');
        await page.click('#nav a[data-page=held]');
        await page.waitForSelector('#held-table tr[data-id="' + heldTxn + '"]');
        await shot(page, '08-held');

        say('replay by clicking, and see it succeed');
        await simFaults({ error_rate: 0 });
        await page.click('#nav a[data-page=dead]');
        await page.click('#dead-table tr[data-id="' + heldTxn + '"]');
        await page.waitForFunction((id) => document.querySelector('#dead-inspect-id').textContent === id, heldTxn);
        await page.click('#dead-replay');
        await page.waitForFunction(() => /Replayed/.test(document.querySelector('#dead-action-msg').textContent));
        await page.waitForSelector('#dead-table tr[data-id="' + heldTxn + '"]', { state: 'detached' });
        await page.waitForFunction((id) => {
            const s = document.querySelector('#replayed-list li[data-id="' + id + '"] .state');
            return s && s.textContent === 'succeeded';
        }, heldTxn);
        check((await jobStatus(heldTxn)) === 'succeeded', 'the API agrees');
        await shot(page, '09-replayed');

        say('orders: the page renders');
        await page.click('#nav a[data-page=orders]');
        await page.waitForSelector('#orders-counts button[data-state="PENDING_POST"]');
        await page.click('#orders-counts button[data-state=""]');
        await page.waitForSelector('#orders-list-wrap', { state: 'visible' });
        await shot(page, '10-orders');

        say('upstreams: calls through the sim show their latency and rate-limit waits');
        /* three fetches at once: three OR11 under Mirakl's budget of one a second (run.sh) */
        for (let i = 0; i < 3; i++) {
            const f = await apiCall('POST', '/api/v1/orchestrator/fetch-orders', undefined, operator);
            check(f.status === 202, 'fetch-orders ' + f.status + ' ' + f.text);
        }
        await page.click('#nav a[data-page=upstreams]');
        const mirakl = '#upstreams-table tr[data-name="mirakl"]';
        await page.waitForSelector(mirakl);
        const figures = await poll('Mirakl latency and waits on the page', () => page.evaluate((sel) => {
            const cell = (c) => document.querySelector(sel + ' td.' + c).textContent;
            const f = { calls: cell('calls'), p50: cell('p50'), p99: cell('p99'), waits: cell('waits') };
            const isLatency = (t) => /^(≥ )?\d+(\.\d+)? (ms|s)$/.test(t);
            return Number(f.calls) >= 3 && isLatency(f.p50) && isLatency(f.p99) &&
                Number(f.waits) >= 1 ? f : null;
        }, mirakl));
        console.log('e2e: mirakl on the page: ' + JSON.stringify(figures));
        const ups = await apiCall('GET', '/v1/upstreams', undefined, operator);
        check(ups.status === 200, '/v1/upstreams ' + ups.status);
        const mk = ups.json.upstreams.find((u) => u.name === 'mirakl');
        check(mk && mk.rate_limit_waits >= Number(figures.waits) && mk.calls >= Number(figures.calls),
            'the page shows the API\'s figures: ' + JSON.stringify(mk));
        check(!/not reported yet/.test(await page.textContent('#upstreams-table')),
            'every column is reported');
        await shot(page, '11-upstreams');

        say('a session ended elsewhere sends the page back to the login');
        const sid = (await context.cookies()).find((c) => c.name === 'cv_session').value;
        const asCookie = { Cookie: 'cv_session=' + sid };
        const sess = await apiCall('GET', '/ui/api/session', undefined, asCookie);
        check(sess.status === 200, 'session read ' + sess.status);
        const out = await apiCall('POST', '/ui/logout', undefined, { ...asCookie, 'X-CSRF-Token': sess.json.csrf });
        check(out.status === 200, 'logout from elsewhere ' + out.status);
        await page.waitForSelector('#login-form', { state: 'visible' });
        check(/session ended/.test(await page.textContent('#login-error')), 'the page says why');

        say('log in again, then log out with the button');
        await page.fill('#login-key', OPS_KEY);
        await page.click('#login-form button[type=submit]');
        await page.waitForSelector('#nav', { state: 'visible' });
        const sid2 = (await context.cookies()).find((c) => c.name === 'cv_session').value;
        check(sid2 !== sid, 'a new session id');
        await page.click('#logout');
        await page.waitForSelector('#login-form', { state: 'visible' });
        check((await context.cookies()).every((c) => c.name !== 'cv_session'), 'the cookie is cleared');
        const after = await apiCall('GET', '/v1/queues', undefined, { Cookie: 'cv_session=' + sid2 });
        check(after.status === 401, 'the old cookie opens nothing: ' + after.status);
        await shot(page, '12-logged-out');

        check(problems.length === 0, 'no script error or CSP refusal on the page:\n' + problems.join('\n'));
        say('passed');
    } catch (e) {
        console.error('e2e: FAILED at "' + step + '": ' + (e.stack || e));
        if (problems.length) console.error('e2e: page problems:\n' + problems.join('\n'));
        await shot(page, 'failure').catch(() => {});
        process.exitCode = 1;
    } finally {
        await browser.close().catch(() => {});
        clearTimeout(watchdog);
    }
}

main().catch((e) => {
    console.error('e2e: ' + (e.stack || e));
    process.exit(1);
});
