/* Conveyor dashboard (README "Dashboard"). Plain JavaScript, no framework, nothing fetched
 * from anywhere but this API.
 *
 * Live updates: polling every POLL_MS with If-None-Match. Each JSON route the page reads
 * answers an ETag; while nothing changed it answers 304 with no body and the page keeps
 * what it has. Polling rather than server-sent events: the API's connection guard closes
 * idle and slow connections on purpose (api/api_conn.c), several API processes sit behind
 * one address, and every figure is a fresh read from Redis or PostgreSQL anyway; a 2 s poll
 * of a few small JSON documents costs the API little and needs nothing new on the server.
 *
 * Auth: the session cookie (HttpOnly, set by POST /ui/login) goes with every same-origin
 * request by itself; state-changing requests also send X-CSRF-Token, the token the login
 * (or GET /ui/api/session) gave this page. A 401 anywhere means the session is gone: back
 * to the login form.
 *
 * Every value from the API reaches the page through textContent, never as HTML. */
'use strict';

const POLL_MS = 2000;
const SPARK_WINDOW_MS = 5 * 60 * 1000;
const RATE_WINDOW_MS = 10 * 1000;

const state = {
    csrf: null,
    name: null,
    scopes: [],
    page: null,
    timer: null,
    busy: false,
    history: new Map(),       /* type -> [{t, ready, running, enq, done}] */
    dead: [],                 /* the last dead-letter list */
    deadSelected: null,       /* its id */
    replayed: new Map(),      /* id -> {status, since} */
    ordersState: null,        /* the state whose list is open ('' = all) */
    ordersPaged: false,       /* a later page is shown: polling leaves it alone */
    orderId: null,
};

/* ---- small helpers ------------------------------------------------------------------ */

const $ = (sel) => document.querySelector(sel);

function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
        if (k === 'class') e.className = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v);
    }
    for (const c of children) {
        if (c === null || c === undefined) continue;
        e.append(c instanceof Node ? c : String(c));
    }
    return e;
}

function td(value, cls) {
    return el('td', { class: cls || '', text: value === null || value === undefined ? '—' : String(value) });
}

function num(v) {
    return typeof v === 'number' ? v.toLocaleString('en-US') : '—';
}

function dur(ms) {
    if (typeof ms !== 'number' || ms < 0) return '—';
    const s = Math.floor(ms / 1000);
    if (s < 1) return ms + ' ms';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

function ago(iso) {
    if (!iso) return '—';
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    return dur(Math.max(0, Date.now() - t)) + ' ago';
}

function clock(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function rate(v) {
    if (typeof v !== 'number') return '—';
    return v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1);
}

function setMsg(node, text, kind) {
    node.textContent = text || '';
    node.className = 'msg' + (kind ? ' ' + kind : '');
}

/* ---- the API -------------------------------------------------------------------------- */

class AuthError extends Error {}
class ApiError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

const etags = new Map();   /* path -> ETag of the body kept in bodies */
const bodies = new Map();

/* GET path as JSON: {body, changed}. 304 gives back the body kept from the last 200. */
async function getJSON(path) {
    const headers = { Accept: 'application/json' };
    if (etags.has(path)) headers['If-None-Match'] = etags.get(path);
    const res = await fetch(path, { headers, cache: 'no-store', credentials: 'same-origin' });
    if (res.status === 304 && bodies.has(path)) return { body: bodies.get(path), changed: false };
    if (res.status === 401) throw new AuthError('session ended');
    const body = await res.json().catch(() => null);
    if (!res.ok) {
        const msg = body && body.error ? body.error.message : res.statusText;
        throw new ApiError(res.status, msg);
    }
    const tag = res.headers.get('ETag');
    if (tag) {
        if (bodies.size > 64) { etags.clear(); bodies.clear(); }
        etags.set(path, tag);
        bodies.set(path, body);
    }
    return { body, changed: true };
}

/* POST with the CSRF token; {status, body}. */
async function post(path, json) {
    const headers = { 'X-CSRF-Token': state.csrf || '' };
    const init = { method: 'POST', headers, cache: 'no-store', credentials: 'same-origin' };
    if (json !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(json);
    }
    const res = await fetch(path, init);
    const body = await res.json().catch(() => null);
    if (res.status === 401 && path !== '/ui/login') throw new AuthError('session ended');
    return { status: res.status, body };
}

function errText(body, fallback) {
    return body && body.error && body.error.message ? body.error.message : fallback;
}

/* ---- login and the shell ------------------------------------------------------------ */

function showLogin(message) {
    stopPolling();
    state.csrf = null;
    etags.clear();
    bodies.clear();
    $('#nav').hidden = true;
    $('#logout').hidden = true;
    $('#who').textContent = '';
    $('#live-status').textContent = '';
    $('#live-status').className = 'status';
    for (const p of document.querySelectorAll('.page')) p.hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = message || '';
    $('#login-key').focus();
}

function enterApp(session) {
    state.csrf = session.csrf;
    state.name = session.name;
    state.scopes = session.scopes || [];
    $('#login').hidden = true;
    $('#nav').hidden = false;
    $('#logout').hidden = false;
    $('#who').textContent = 'key: ' + session.name;
    route();
    startPolling();
}

async function onLogin(ev) {
    ev.preventDefault();
    const input = $('#login-key');
    const key = input.value.trim();
    $('#login-error').textContent = '';
    if (!key) return;
    let r;
    try {
        r = await post('/ui/login', { key });
    } catch (e) {
        $('#login-error').textContent = 'The API cannot be reached: ' + e.message;
        return;
    }
    input.value = '';          /* the key is not kept by the page */
    if (r.status === 200) {
        const s = await getJSON('/ui/api/session').catch(() => null);
        enterApp(s ? s.body : { name: r.body.name, csrf: r.body.csrf, scopes: [] });
    } else if (r.status === 401) {
        $('#login-error').textContent = 'Unknown key.';
    } else if (r.status === 403) {
        $('#login-error').textContent = 'This key lacks the operator scope.';
    } else {
        $('#login-error').textContent = errText(r.body, 'Login failed (' + r.status + ').');
    }
}

async function onLogout() {
    try {
        await post('/ui/logout');
    } catch (e) {
        /* a 401: it had ended already */
    }
    showLogin('Logged out.');
}

/* ---- routing ---------------------------------------------------------------------------- */

const pages = {
    queues: { poll: pollQueues },
    workers: { poll: pollWorkers },
    dead: { poll: pollDead },
    orders: { poll: pollOrders },
    order: { poll: pollOrder, nav: 'orders' },
    held: { poll: pollHeld },
    upstreams: { poll: pollUpstreams },
};

function route() {
    const parts = (location.hash || '#/queues').replace(/^#\/?/, '').split('/');
    let page = parts[0] || 'queues';
    if (!pages[page]) page = 'queues';
    if (page === 'order') {
        state.orderId = decodeURIComponent(parts.slice(1).join('/'));
        if (!state.orderId) page = 'orders';
    }
    state.page = page;
    for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== 'page-' + page;
    const navPage = pages[page].nav || page;
    for (const a of document.querySelectorAll('#nav a'))
        a.classList.toggle('active', a.dataset.page === navPage);
    if (state.csrf) tick();
}

/* ---- polling ------------------------------------------------------------------------------ */

function startPolling() {
    stopPolling();
    state.timer = setInterval(tick, POLL_MS);
    tick();
}

function stopPolling() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
}

/* One round: the queues always (their history feeds the sparklines whatever page is open),
 * then the open page's own reads. A round still out when the next is due is skipped. */
async function tick() {
    if (state.busy || !state.csrf) return;
    state.busy = true;
    const status = $('#live-status');
    try {
        const q = await getJSON('/v1/queues');
        record(q.body);
        fillTypes(q.body);
        if (state.page === 'queues') renderQueues(q.body);
        else if (pages[state.page]) await pages[state.page].poll();
        await pollReplayed();
        status.textContent = 'live · ' + new Date().toLocaleTimeString();
        status.className = 'status live';
    } catch (e) {
        if (e instanceof AuthError) {
            showLogin('Your session ended: log in again.');
        } else {
            status.textContent = 'not updating: ' + e.message;
            status.className = 'status down';
        }
    } finally {
        state.busy = false;
    }
}

/* ---- queues ----------------------------------------------------------------------------- */

function done(c) {
    return c ? (c.succeeded || 0) + (c.failed || 0) + (c.dead || 0) : 0;
}

function record(body) {
    const now = Date.now();
    for (const q of body.queues || []) {
        let h = state.history.get(q.type);
        if (!h) state.history.set(q.type, (h = []));
        h.push({ t: now, ready: q.depth, running: q.pending,
                 enq: q.counts ? q.counts.enqueued : null, done: q.counts ? done(q.counts) : null });
        while (h.length && h[0].t < now - SPARK_WINDOW_MS) h.shift();
    }
}

/* Per-second rates of a type over the last RATE_WINDOW_MS of its history. */
function rates(type) {
    const h = state.history.get(type) || [];
    if (h.length < 2) return { in: null, out: null };
    const last = h[h.length - 1];
    let first = h[0];
    for (const s of h) if (s.t >= last.t - RATE_WINDOW_MS) { first = s; break; }
    if (first === last) first = h[h.length - 2];
    const dt = (last.t - first.t) / 1000;
    if (dt <= 0 || last.enq === null || first.enq === null) return { in: null, out: null };
    return { in: Math.max(0, (last.enq - first.enq) / dt),
             out: Math.max(0, (last.done - first.done) / dt) };
}

function sparkline(type) {
    const c = el('canvas', { class: 'spark', width: '150', height: '28' });
    const h = state.history.get(type) || [];
    const g = c.getContext('2d');
    if (!g || h.length < 2) return c;
    /* the x axis spans the history kept so far (at least a minute, at most the window) */
    const now = Date.now(), vals = h.map((s) => s.ready + s.running);
    const span = Math.min(SPARK_WINDOW_MS, Math.max(60000, now - h[0].t));
    const max = Math.max(1, ...vals);
    g.strokeStyle = '#58a6ff';
    g.lineWidth = 1.5;
    g.beginPath();
    h.forEach((s, i) => {
        const x = 150 - ((now - s.t) / span) * 150;
        const y = 26 - (vals[i] / max) * 24;
        if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
    c.title = 'max ' + max + ' over the last ' + dur(now - h[0].t);
    return c;
}

function renderQueues(body) {
    const tbody = $('#queues-table tbody');
    const rows = (body.queues || []).map((q) => {
        const r = rates(q.type), c = q.counts || {};
        const lagCls = q.oldest_age_ms > 60000 ? 'num warn' : 'num';
        return el('tr', { dataset: { type: q.type } },
            td(q.type, 'mono'),
            td(num(q.depth), 'num depth'),
            td(num(q.pending), 'num running'),
            td(num(q.scheduled), 'num delayed'),
            td(num(q.dead), 'num dead'),
            td(q.lag === null ? '—' : num(q.lag), 'num lag'),
            td(q.oldest_age_ms ? dur(q.oldest_age_ms) : '—', lagCls + ' oldest'),
            td(num(q.consumers), 'num consumers'),
            td(rate(r.in), 'num rate-in'),
            td(rate(r.out), 'num rate-out'),
            td(num(c.enqueued), 'num enqueued'),
            td(num(c.succeeded), 'num succeeded'),
            el('td', {}, sparkline(q.type)));
    });
    tbody.replaceChildren(...rows);
    $('#queues-empty').hidden = rows.length > 0;
}

/* The dead-letter page's type filter lists the types the queues know. */
function fillTypes(body) {
    const sel = $('#dead-type');
    const have = new Set([...sel.options].map((o) => o.value));
    for (const q of body.queues || [])
        if (!have.has(q.type)) sel.append(el('option', { value: q.type, text: q.type }));
}

/* ---- workers ------------------------------------------------------------------------------ */

async function pollWorkers() {
    const { body } = await getJSON('/v1/workers');
    const ws = body.workers || [];
    const busy = ws.filter((w) => w.busy).length;
    const slots = ws.reduce((n, w) => n + (w.concurrency || 0), 0);
    $('#workers-summary').textContent =
        ws.length + ' live · ' + busy + ' busy · ' + slots + ' slots';
    $('#workers-table tbody').replaceChildren(...ws.map((w) => el('tr', { dataset: { name: w.name } },
        td(w.name, 'mono'), td(w.host), td(w.pid, 'num'), td((w.types || []).join(', ')),
        td(w.concurrency, 'num'),
        el('td', {}, el('span', { class: 'badge ' + (w.busy ? 'ok' : 'dim'), text: w.busy ? 'busy' : 'idle' })),
        td(num(w.processed), 'num processed'), td(num(w.recent), 'num'),
        td(ago(w.started_at)), td(ago(w.last_seen)))));
}

/* ---- dead letters ---------------------------------------------------------------------- */

function deadPath() {
    const type = $('#dead-type').value, limit = $('#dead-limit').value;
    return '/v1/dead?limit=' + encodeURIComponent(limit) +
        (type ? '&type=' + encodeURIComponent(type) : '');
}

async function pollDead() {
    const { body, changed } = await getJSON(deadPath());
    if (changed || state.dead !== body.jobs) {
        state.dead = body.jobs || [];
        renderDead();
    }
}

function matches(job, text) {
    if (!text) return true;
    const t = text.toLowerCase();
    return [job.id, job.type, job.last_error, JSON.stringify(job.payload)]
        .some((v) => v && String(v).toLowerCase().includes(t));
}

function renderDead() {
    const text = $('#dead-search').value.trim();
    const jobs = state.dead.filter((j) => matches(j, text));
    $('#dead-table tbody').replaceChildren(...jobs.map((j) => {
        const tr = el('tr', { dataset: { id: j.id }, onclick: () => selectDead(j.id) },
            td(j.id, 'mono'), td(j.type),
            el('td', {}, el('span', { class: 'badge bad', text: j.status }),
                j.held ? el('span', { class: 'badge warn', text: 'held' }) : null),
            td(j.attempt + '/' + j.max_attempts, 'num'), td(ago(j.updated_at)),
            td(j.last_error, 'err'));
        if (j.id === state.deadSelected) tr.classList.add('selected');
        return tr;
    }));
    const sel = state.dead.find((j) => j.id === state.deadSelected);
    if (sel) showDead(sel);
}

function selectDead(id) {
    state.deadSelected = id;
    setMsg($('#dead-action-msg'), '');
    renderDead();
}

function showDead(j) {
    $('#dead-inspect').hidden = false;
    $('#dead-inspect-id').textContent = j.id;
    const f = $('#dead-inspect-fields');
    const rows = [['type', j.type], ['state', j.status + (j.held ? ' (held)' : '')],
        ['attempts', j.attempt + ' of ' + j.max_attempts], ['created', clock(j.created_at)],
        ['started', clock(j.started_at)], ['finished', clock(j.finished_at)],
        ['updated', clock(j.updated_at)]];
    f.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
    $('#dead-inspect-error').textContent = j.last_error || '(none)';
    $('#dead-inspect-payload').textContent = j.payload === null && j.payload_bytes
        ? '(' + j.payload_bytes + ' bytes: too large for the list; GET /v1/jobs/' + j.id + ')'
        : JSON.stringify(j.payload, null, 2);
    $('#dead-purge').disabled = !!j.held;
    $('#dead-purge').title = j.held ? 'held: the reconciler settles its money first' : '';
}

async function replaySelected() {
    const id = state.deadSelected;
    if (!id) return;
    const msg = $('#dead-action-msg');
    $('#dead-replay').disabled = true;
    try {
        const r = await post('/v1/dead/' + encodeURIComponent(id) + '/retry');
        if (r.status === 202) {
            setMsg(msg, 'Replayed: the job is queued again.', 'ok');
            state.replayed.set(id, { status: 'queued', since: Date.now() });
            renderReplayed();
            state.deadSelected = null;
            $('#dead-inspect').hidden = true;
            etags.delete(deadPath());
            await pollDead();
        } else {
            setMsg(msg, errText(r.body, 'Replay failed (' + r.status + ').'), 'error');
        }
    } catch (e) {
        if (e instanceof AuthError) return showLogin('Your session ended: log in again.');
        setMsg(msg, e.message, 'error');
    } finally {
        $('#dead-replay').disabled = false;
    }
}

function askPurge() {
    const id = state.deadSelected;
    if (!id) return;
    $('#purge-dialog-id').textContent = id;
    $('#purge-dialog').showModal();
}

async function onPurgeClosed() {
    const d = $('#purge-dialog');
    const id = state.deadSelected;
    if (d.returnValue !== 'confirm' || !id) return;
    d.returnValue = '';
    const msg = $('#dead-action-msg');
    try {
        const r = await post('/v1/dead/' + encodeURIComponent(id) + '/purge');
        if (r.status === 200) {
            setMsg(msg, 'Purged ' + id + '.', 'ok');
            state.deadSelected = null;
            $('#dead-inspect').hidden = true;
            etags.delete(deadPath());
            await pollDead();
        } else {
            setMsg(msg, errText(r.body, 'Purge failed (' + r.status + ').'), 'error');
        }
    } catch (e) {
        if (e instanceof AuthError) return showLogin('Your session ended: log in again.');
        setMsg(msg, e.message, 'error');
    }
}

/* Jobs replayed from this page, followed until they settle (GET /v1/jobs/{id}). */
async function pollReplayed() {
    for (const [id, r] of state.replayed) {
        if (['succeeded', 'dead', 'failed'].includes(r.status)) continue;
        try {
            const { body } = await getJSON('/v1/jobs/' + encodeURIComponent(id));
            r.status = body.status;
            r.error = body.last_error;
        } catch (e) {
            if (e instanceof AuthError) throw e;
            r.status = 'unknown (' + e.message + ')';
        }
    }
    renderReplayed();
}

function renderReplayed() {
    const items = [...state.replayed].reverse().map(([id, r]) => {
        const cls = r.status === 'succeeded' ? 'ok' : ['dead', 'failed'].includes(r.status) ? 'bad' : 'dim';
        return el('li', { dataset: { id } }, el('span', { class: 'mono', text: id }), ' ',
            el('span', { class: 'badge ' + cls + ' state', text: r.status }),
            r.error && cls === 'bad' ? ' ' + r.error : null);
    });
    $('#replayed-list').replaceChildren(...items);
}

/* ---- orders ----------------------------------------------------------------------------- */

function noOrdersScope(node) {
    setMsg(node, 'This key lacks the orders scope: log in with a key that lists "operator" ' +
        'and "orders" (or "*") to see orders.', 'error');
}

async function pollOrders() {
    const msg = $('#orders-msg');
    try {
        const { body } = await getJSON('/api/v1/logs/orders-counts');
        setMsg(msg, '');
        const chips = Object.entries(body.counts || {}).map(([st, n]) =>
            el('button', { type: 'button', class: st === state.ordersState ? 'active' : '',
                dataset: { state: st }, onclick: () => openState(st) },
            st, el('span', { class: 'n', text: num(n) })));
        chips.unshift(el('button', { type: 'button', class: state.ordersState === '' ? 'active' : '',
            dataset: { state: '' }, onclick: () => openState('') },
            'all', el('span', { class: 'n', text: num(body.total) })));
        $('#orders-counts').replaceChildren(...chips);
        if (state.ordersState !== null && !state.ordersPaged) await loadOrders(null);
    } catch (e) {
        if (e instanceof ApiError && e.status === 403) return noOrdersScope(msg);
        if (e instanceof ApiError && e.status === 503) return setMsg(msg, e.message, 'error');
        throw e;
    }
}

function openState(st) {
    state.ordersState = st;
    state.ordersPaged = false;
    for (const b of document.querySelectorAll('#orders-counts button'))
        b.classList.toggle('active', b.dataset.state === st);
    loadOrders(null).catch((e) => setMsg($('#orders-msg'), e.message, 'error'));
}

/* A page of the open state's orders: the first (cursor null; polled) or the one at cursor
 * (the "Next page" button; left alone by the polling until another state is opened). */
async function loadOrders(cursor) {
    const st = state.ordersState;
    let path = '/api/v1/logs/orders-view?limit=50' + (st ? '&state=' + encodeURIComponent(st) : '');
    if (cursor) path += '&cursor=' + encodeURIComponent(cursor);
    const { body } = await getJSON(path);
    state.ordersPaged = !!cursor;
    $('#orders-list-wrap').hidden = false;
    $('#orders-list-title').textContent = (st || 'All orders') + (cursor ? ' (a later page)' : '');
    $('#orders-table tbody').replaceChildren(...(body.orders || []).map((o) =>
        el('tr', { dataset: { order: o.order_id },
            onclick: () => { location.hash = '#/order/' + encodeURIComponent(o.order_id); } },
        td(o.order_id, 'mono'), td(o.internal_state), td(o.carrier_code), td(o.tracking_number),
        td(o.attempts, 'num'), td(ago(o.updated_at)), td(o.last_error, 'err'))));
    $('#orders-more').hidden = !body.next_cursor;
    $('#orders-more').dataset.cursor = body.next_cursor || '';
}

async function pollOrder() {
    const msg = $('#order-msg');
    const id = state.orderId;
    $('#order-id').textContent = id;
    let body;
    try {
        ({ body } = await getJSON('/api/v1/orders/' + encodeURIComponent(id)));
    } catch (e) {
        if (e instanceof ApiError && e.status === 403) return noOrdersScope(msg);
        if (e instanceof ApiError) return setMsg(msg, e.message, 'error');
        throw e;
    }
    setMsg(msg, '');
    const o = body.order || {};
    const keys = ['internal_state', 'mirakl_state', 'carrier_code', 'tracking_number',
        'expedition_id', 'carrier_status', 'carrier_event_at', 'attempts', 'last_error',
        'country', 'weight_kg', 'shipping_deadline', 'created_at', 'state_changed_at',
        'updated_at', 'fetched_at'];
    $('#order-fields').replaceChildren(...keys.flatMap((k) =>
        [el('dt', { text: k }), el('dd', { text: o[k] === null || o[k] === undefined ? '—' : String(o[k]) })]));
    $('#order-ops tbody').replaceChildren(...(body.operations || []).map((op) => el('tr', {},
        td(clock(op.at)), td(op.scope), td(op.action),
        td(op.from_state || op.to_state ? (op.from_state || '·') + ' → ' + (op.to_state || '·') : ''),
        td(op.status), td(op.message), td(op.job_id, 'mono'))));
    $('#order-calls tbody').replaceChildren(...(body.calls || []).map((c) => el('tr', {},
        td(clock(c.at)), td(c.upstream), td(c.method + ' ' + c.url, 'mono'), td(c.status_code, 'num'),
        td(c.class), td(c.duration_ms, 'num'), td(c.attempt, 'num'), td(c.error, 'err'))));
}

/* ---- held money ---------------------------------------------------------------------- */

async function pollHeld() {
    const { body } = await getJSON('/v1/held');
    const f = body.figures;
    const card = (k, v) => el('div', { class: 'card' }, el('div', { class: 'v', text: v }),
        el('div', { class: 'k', text: k }));
    $('#held-figures').replaceChildren(...(f
        ? [card('held transactions (older than ' + body.held_after_s + ' s)', num(f.count)),
            card('held amount', typeof f.amount === 'number' ? f.amount.toFixed(2) : String(f.amount)),
            card('oldest', dur((f.oldest_s || 0) * 1000)),
            card('reconciler pass', ago(f.at))]
        : [card('reconciler', 'no pass reported yet')]));
    const rows = body.transactions;
    setMsg($('#held-msg'), rows === null ? 'PostgreSQL is not available: the list is missing.' : '',
        rows === null ? 'error' : '');
    $('#held-table tbody').replaceChildren(...(rows || []).map((t) => el('tr', { dataset: { id: t.transaction_id } },
        td(t.transaction_id, 'mono'), td(t.user_id, 'num'), td(t.offer_id, 'num'),
        td(typeof t.amount === 'number' ? t.amount.toFixed(2) : t.amount, 'num'),
        td(dur((t.age_s || 0) * 1000)))));
}

/* ---- upstreams ------------------------------------------------------------------------- */

/* A latency in ms for the table. A quantile at the histogram's last bound (top) only says
 * "at least that": the calls above it are counted, not measured. */
function latency(v, top) {
    if (typeof v !== 'number') return '—';
    const text = v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 2) + ' s'
        : (v >= 100 ? Math.round(v) : v.toFixed(1)) + ' ms';
    return (typeof top === 'number' && v >= top ? '≥ ' : '') + text;
}

async function pollUpstreams() {
    /* the links line: /ready's figures (its 503 is a state to show, not an error) */
    const ready = await fetch('/ready', { cache: 'no-store', credentials: 'same-origin' })
        .then((res) => res.json()).catch(() => ({}));
    $('#stores').textContent = 'Redis ' + (ready.redis || '?') + ' · PostgreSQL ' + (ready.postgres || '?');
    const { body } = await getJSON('/v1/upstreams');
    const top = (body.latency_bounds_ms || []).slice(-1)[0];
    const circuitCls = { closed: 'ok', half_open: 'warn', open: 'bad' };
    $('#upstreams-table tbody').replaceChildren(...(body.upstreams || []).map((u) => {
        const last = u.last_call || {}, q = u.latency_ms || {};
        return el('tr', { dataset: { name: u.name } },
            td(u.name, 'mono'),
            el('td', {}, el('span', { class: 'badge ' + (circuitCls[u.circuit] || 'dim'), text: u.circuit })),
            td(u.last_call ? ago(last.at) : 'not called yet', u.last_call ? 'last-at' : 'dim last-at'),
            td(u.last_call ? latency(last.latency_ms) : null, 'num last-latency'),
            td(last.status, 'num'), td(last.class), td(ago(u.last_ok_at)),
            td(num(u.calls), 'num calls'),
            td(latency(q.p50, top), 'num p50'), td(latency(q.p95, top), 'num p95'),
            td(latency(q.p99, top), 'num p99'),
            td(num(u.rate_limit_waits), 'num waits'));
    }));
}

/* ---- start -------------------------------------------------------------------------------- */

async function pollQueues() { /* the tick reads /v1/queues itself */ }

async function start() {
    $('#login-form').addEventListener('submit', onLogin);
    $('#logout').addEventListener('click', onLogout);
    $('#dead-replay').addEventListener('click', replaySelected);
    $('#dead-purge').addEventListener('click', askPurge);
    $('#purge-dialog').addEventListener('close', onPurgeClosed);
    $('#dead-search').addEventListener('input', renderDead);
    $('#dead-filter').addEventListener('submit', (e) => e.preventDefault());
    for (const id of ['#dead-type', '#dead-limit'])
        $(id).addEventListener('change', () => { state.deadSelected = null; $('#dead-inspect').hidden = true; tick(); });
    $('#orders-more').addEventListener('click', () => {
        loadOrders($('#orders-more').dataset.cursor)
            .catch((e) => setMsg($('#orders-msg'), e.message, 'error'));
    });
    window.addEventListener('hashchange', route);
    try {
        const { body } = await getJSON('/ui/api/session');
        enterApp(body);
    } catch (e) {
        showLogin(e instanceof AuthError ? '' : 'The API cannot be reached: ' + e.message);
    }
}

start();
