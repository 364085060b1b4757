-- 0002_orders.sql - order orchestration (issue 6): seed 004's CSV files as tables
-- (orders = its orders view, operations = its operations log), the state machine's
-- edges, tracking events that arrived early, the outbound communication log, the
-- durable webhook dedupe, and the PL/pgSQL functions through which every change
-- of an order goes.
--
-- Read 0001_init.sql's header first: the same rules hold (no BEGIN/COMMIT, never
-- edit after merge, change a function's signature only through a new name).
--
-- Contract with common/ostore.c (the only caller):
--   * state names are common/ostate.c's, and order_edges holds exactly its table
--     (tests/integ/test_ostore.c compares them pair by pair);
--   * the result words of the functions ('claimed', 'busy', 'fenced', 'missing',
--     'ok', 'same', 'edge', 'pending', 'stale', 'new', 'changed', 'unchanged') are
--     part of the contract: add new ones only together with code that knows them;
--   * every function takes its values as parameters; none builds SQL text.
--
-- Fencing (the model is worker/h_activation.c's lease epochs): a job that works on
-- an order first claims it (cv_order_claim) with its job id and the epoch of its
-- delivery. Every write then names the same (job, epoch) and is refused as
-- 'fenced' when the order's claim is no longer exactly that: another job took an
-- expired claim over, or a newer delivery of the same job did. A write without a
-- job (an operator action) is allowed only while no live claim exists; it clears
-- an expired claim so that its late holder is fenced too. Each function runs as
-- one statement, so in one transaction, and locks the order row (FOR UPDATE)
-- before it reads anything: two writers of one order are serialised by the row
-- lock and the second judges the first's committed result.
--
-- Lock order: functions that touch several orders (cv_order_upsert) lock them in
-- order_id order, so concurrent batches never deadlock each other.

-- ---- tables ------------------------------------------------------------------

-- The state machine's edges (common/ostate.c). cv_order_transition refuses any
-- move that is not a row here.
CREATE TABLE order_edges (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO order_edges (from_state, to_state) VALUES
    ('PENDING_POST',      'POSTED'),
    ('PENDING_POST',      'FAILED_POST'),
    ('POSTED',            'AWAITING_TRACKING'),
    ('POSTED',            'FAILED_POST'),
    ('AWAITING_TRACKING', 'TRACKED'),
    ('AWAITING_TRACKING', 'FAILED_TRACKING'),
    ('TRACKED',           'MIRAKL_OK'),
    ('TRACKED',           'FAILED_PUSH'),
    ('MIRAKL_OK',         'COMPLETE'),
    ('FAILED_POST',       'PENDING_POST'),
    ('FAILED_TRACKING',   'AWAITING_TRACKING'),
    ('FAILED_TRACKING',   'PENDING_POST'),
    ('FAILED_PUSH',       'TRACKED'),
    ('FAILED_PUSH',       'PENDING_POST');

-- Seed 004's orders view: one row per marketplace order, its current state.
--   marketplace fields (written by cv_order_upsert only): mirakl_state, weight_kg,
--     country, shipping_deadline, customer (the shipping address), lines,
--     mirakl_updated_at (the marketplace's last update date of the order: a fetch
--     whose date is not newer changes nothing);
--   our fields (written by cv_order_transition / cv_order_track only):
--     internal_state and the carrier_* / tracking columns, attempts (how many
--     times the order entered a FAILED_* state), last_error;
--   the claim: lock_job, lock_epoch, lock_until (cv_order_claim / _release).
-- updated_at moves when data changes (not on claims): the read side pages by
-- (updated_at, order_id).
CREATE TABLE orders (
    order_id                text PRIMARY KEY CHECK (order_id <> ''),
    internal_state          text NOT NULL DEFAULT 'PENDING_POST'
                            CHECK (internal_state IN ('PENDING_POST', 'POSTED',
                                   'AWAITING_TRACKING', 'TRACKED', 'MIRAKL_OK', 'COMPLETE',
                                   'FAILED_POST', 'FAILED_TRACKING', 'FAILED_PUSH')),
    mirakl_state            text,
    carrier_code            text,
    tracking_number         text,
    expedition_id           text,
    carrier_status          text,
    carrier_event_at        timestamptz,   -- time of the last applied tracking event
    carrier_seq             bigint,        -- its sequence number, when the carrier gives one
    mirakl_tracking_updated boolean NOT NULL DEFAULT false,
    weight_kg               numeric(12,3),
    country                 text,
    shipping_deadline       timestamptz,
    customer                jsonb,
    lines                   jsonb,
    attempts                int NOT NULL DEFAULT 0,
    last_error              text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    state_changed_at        timestamptz NOT NULL DEFAULT now(),
    fetched_at              timestamptz,
    mirakl_updated_at       timestamptz,
    lock_job                uuid,
    lock_epoch              bigint NOT NULL DEFAULT 0,
    lock_until              timestamptz
);
CREATE INDEX orders_state_updated_idx ON orders (internal_state, updated_at, order_id);
CREATE INDEX orders_updated_idx ON orders (updated_at, order_id);
CREATE INDEX orders_tracking_number_idx ON orders (tracking_number)
    WHERE tracking_number IS NOT NULL;
CREATE INDEX orders_expedition_id_idx ON orders (expedition_id)
    WHERE expedition_id IS NOT NULL;

-- Seed 004's operations log, append-only (a trigger below refuses UPDATE and
-- DELETE; TRUNCATE stays possible for retention and test resets). One row per
-- fetch of a new or changed order, per transition (refused ones too, status
-- REFUSED), per tracking event (OK, STALE, PENDING, DUPLICATE). from_state and
-- to_state are set when the row is about a move.
CREATE TABLE operations (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    scope      text NOT NULL,
    action     text NOT NULL,
    order_id   text,
    carrier    text,
    status     text NOT NULL,
    message    text,
    meta       jsonb,
    from_state text,
    to_state   text,
    job_id     uuid,
    trace_id   text
);
CREATE INDEX operations_order_idx ON operations (order_id, id);
CREATE INDEX operations_at_idx ON operations (at);

CREATE FUNCTION cv_operations_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE EXCEPTION 'operations is append-only: % refused', TG_OP USING ERRCODE = '55000';
END
$fn$;
CREATE TRIGGER operations_append_only BEFORE UPDATE OR DELETE ON operations
    FOR EACH STATEMENT EXECUTE FUNCTION cv_operations_append_only();

-- Tracking events that arrived before their order could take them (the order does
-- not exist yet, or has not reached AWAITING_TRACKING). order_id is our reference
-- as the carrier echoed it. Rows are applied, in event order, and deleted in the
-- transaction that moves the order into AWAITING_TRACKING (or by
-- cv_order_pending_take); each application leaves an operations row.
CREATE TABLE tracking_pending (
    id              bigserial PRIMARY KEY,
    order_id        text NOT NULL,
    carrier         text NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('ACCEPTED', 'IN_TRANSIT', 'OUT_FOR_DELIVERY',
                                      'DELIVERED', 'EXCEPTION')),
    terminal        boolean NOT NULL DEFAULT false,
    tracking_number text,
    event_at        timestamptz NOT NULL,
    seq             bigint,
    webhook_id      text,
    payload         jsonb,
    job_id          uuid,
    trace_id        text,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracking_pending_order_idx ON tracking_pending (order_id, event_at, seq, id);

-- Every outbound call (marketplace, carriers, activation), written by the worker in
-- batches outside the order's transaction, so a rolled-back step still leaves its
-- record. url never carries a secret; no header is stored.
CREATE TABLE comm_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    upstream    text NOT NULL,
    method      text NOT NULL,
    url         text NOT NULL,
    status      int,
    class       text,
    duration_ms numeric(12,3),
    attempt     int,
    job_id      uuid,
    trace_id    text,
    order_id    text,
    error       text
);
CREATE INDEX comm_log_order_idx ON comm_log (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX comm_log_at_idx ON comm_log (at);

-- Webhook ids already taken (source = the carrier or marketplace). The API may
-- dedupe in Redis first; this is the durable backstop: cv_order_track applies an
-- event with a known (source, webhook_id) at most once. Rows older than the
-- signature tolerance window can be deleted (a replay that old fails its
-- signature check anyway).
CREATE TABLE webhook_seen (
    source      text NOT NULL,
    webhook_id  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, webhook_id)
);

-- ---- helpers -------------------------------------------------------------------

-- A timestamp as RFC 3339 UTC with microseconds ("2025-06-01T10:00:00.123456Z"),
-- the form the read side returns (common/ostore.c selects through it).
CREATE FUNCTION cv_ts(p timestamptz) RETURNS text
LANGUAGE sql STABLE
AS $fn$
    SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$fn$;

-- The state an order in AWAITING_TRACKING moves to on a tracking event, or NULL.
-- The same table as otrack_target() in common/ostate.c.
CREATE FUNCTION cv_otrack_target(p_status text, p_terminal boolean) RETURNS text
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT CASE
        WHEN p_status IN ('ACCEPTED', 'IN_TRANSIT', 'OUT_FOR_DELIVERY', 'DELIVERED')
            THEN 'TRACKED'
        WHEN p_status = 'EXCEPTION' AND coalesce(p_terminal, false)
            THEN 'FAILED_TRACKING'
    END
$fn$;

-- May the writer (p_job, p_epoch) change an order whose claim is (lock_job,
-- lock_epoch, lock_until)? NULL when yes, else the refusal:
--   p_job given:  it must hold the claim with exactly that epoch, live or expired
--                 (an expired claim nobody took over is still its own), else 'fenced';
--   p_job NULL:   an operator; 'busy' while any claim is live.
CREATE FUNCTION cv_order_fence(p_lock_job uuid, p_lock_epoch bigint, p_lock_until timestamptz,
                               p_job uuid, p_epoch bigint) RETURNS text
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF p_job IS NULL THEN
        IF p_lock_job IS NOT NULL AND p_lock_until > clock_timestamp() THEN
            RETURN 'busy';
        END IF;
        RETURN NULL;
    END IF;
    IF p_epoch IS NULL THEN
        RAISE EXCEPTION 'cv_order_fence: a job write needs its epoch' USING ERRCODE = '22004';
    END IF;
    IF p_lock_job IS DISTINCT FROM p_job OR p_lock_epoch <> p_epoch THEN
        RETURN 'fenced';
    END IF;
    RETURN NULL;
END
$fn$;

-- ---- claims --------------------------------------------------------------------

-- cv_order_claim: take the per-order claim for a job delivery.
--   no order                                         -> 'missing'
--   held by this job with a higher epoch             -> 'fenced'  (we are a stale delivery)
--   held by this job, same or lower epoch            -> 'claimed' (renewed, or a newer
--                                                       delivery takes over at once)
--   held by another job, lock_until in the future    -> 'busy'
--   free, or another job's claim has expired         -> 'claimed'
-- A claim lasts p_ttl_ms from now; renew by claiming again with the same epoch.
CREATE FUNCTION cv_order_claim(p_order_id text, p_job uuid, p_epoch bigint, p_ttl_ms int)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    o record;
BEGIN
    IF p_order_id IS NULL OR p_job IS NULL OR p_epoch IS NULL OR p_ttl_ms IS NULL THEN
        RAISE EXCEPTION 'cv_order_claim: NULL argument' USING ERRCODE = '22004';
    END IF;
    IF p_ttl_ms <= 0 THEN
        RAISE EXCEPTION 'cv_order_claim: ttl must be positive' USING ERRCODE = '22023';
    END IF;
    SELECT x.lock_job, x.lock_epoch, x.lock_until INTO o
      FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    IF o.lock_job = p_job THEN
        IF p_epoch < o.lock_epoch THEN
            RETURN 'fenced';
        END IF;
    ELSIF o.lock_job IS NOT NULL AND o.lock_until > clock_timestamp() THEN
        RETURN 'busy';
    END IF;
    UPDATE orders x
       SET lock_job = p_job, lock_epoch = p_epoch,
           lock_until = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
     WHERE x.order_id = p_order_id;
    RETURN 'claimed';
END
$fn$;

-- cv_order_release: give the claim back once the job's step is done.
--   no order -> 'missing'; this job and epoch hold it -> 'ok' (cleared);
--   this job holds it with a higher epoch -> 'fenced'; another job holds it
--   (live or expired) -> 'busy'; nobody holds it -> 'same'. Only 'ok' changes anything.
CREATE FUNCTION cv_order_release(p_order_id text, p_job uuid, p_epoch bigint) RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    o record;
BEGIN
    IF p_order_id IS NULL OR p_job IS NULL OR p_epoch IS NULL THEN
        RAISE EXCEPTION 'cv_order_release: NULL argument' USING ERRCODE = '22004';
    END IF;
    SELECT x.lock_job, x.lock_epoch INTO o
      FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    ELSIF o.lock_job IS NULL THEN
        RETURN 'same';
    ELSIF o.lock_job <> p_job THEN
        RETURN 'busy';
    ELSIF o.lock_epoch <> p_epoch THEN
        RETURN CASE WHEN o.lock_epoch > p_epoch THEN 'fenced' ELSE 'busy' END;
    END IF;
    UPDATE orders x SET lock_job = NULL, lock_until = NULL WHERE x.order_id = p_order_id;
    RETURN 'ok';
END
$fn$;

-- ---- tracking --------------------------------------------------------------------

-- cv_order_track_apply (internal; callers hold the order's row lock and have done
-- the fencing and duplicate checks): apply one tracking event to an order that is
-- in AWAITING_TRACKING or later.
--   (event_at, seq) not newer than the last applied (carrier_event_at, carrier_seq)
--       -> 'stale': an operations row (status STALE, carrier status history) and
--          nothing else: a delivered-then-in-transit pair never moves back. A NULL
--          seq sorts before any seq; an equal pair is stale (the same event again).
--   else -> 'ok': carrier_status, carrier_event_at, carrier_seq and (when given)
--          tracking_number take the event's values; an order in AWAITING_TRACKING
--          moves to cv_otrack_target(status, terminal) when that is an edge
--          (TRACKED, or FAILED_TRACKING on a terminal exception; that one counts
--          as an attempt and sets last_error). Other states never move here.
-- p_source says where the event came from ('event' or 'pending') in the
-- operations row.
CREATE FUNCTION cv_order_track_apply(p_order_id text, p_carrier text, p_status text,
                                     p_terminal boolean, p_event_at timestamptz,
                                     p_seq bigint, p_tracking_number text,
                                     p_webhook_id text, p_job uuid, p_trace text,
                                     p_source text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    o        record;
    v_target text;
    v_move   boolean;
    v_meta   jsonb;
BEGIN
    SELECT x.internal_state, x.carrier_status, x.carrier_event_at, x.carrier_seq INTO o
      FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    v_meta := jsonb_build_object('carrier_status', p_status, 'terminal', p_terminal,
                                 'event_at', p_event_at, 'seq', p_seq,
                                 'webhook_id', p_webhook_id, 'source', p_source);
    IF o.carrier_event_at IS NOT NULL
       AND (p_event_at, coalesce(p_seq, -1)) <= (o.carrier_event_at, coalesce(o.carrier_seq, -1)) THEN
        INSERT INTO operations (scope, action, order_id, carrier, status, message, meta,
                                job_id, trace_id)
        VALUES ('carrier', 'tracking_event', p_order_id, p_carrier, 'STALE',
                format('%s older than the applied %s', p_status, o.carrier_status),
                v_meta || jsonb_build_object('applied_event_at', o.carrier_event_at,
                                             'applied_seq', o.carrier_seq),
                p_job, p_trace);
        RETURN 'stale';
    END IF;

    v_target := cv_otrack_target(p_status, p_terminal);
    v_move := o.internal_state = 'AWAITING_TRACKING' AND v_target IS NOT NULL
              AND EXISTS (SELECT 1 FROM order_edges e
                           WHERE e.from_state = o.internal_state AND e.to_state = v_target);
    UPDATE orders x
       SET carrier_status = p_status,
           carrier_event_at = p_event_at,
           carrier_seq = p_seq,
           tracking_number = coalesce(p_tracking_number, x.tracking_number),
           internal_state = CASE WHEN v_move THEN v_target ELSE x.internal_state END,
           state_changed_at = CASE WHEN v_move THEN now() ELSE x.state_changed_at END,
           attempts = x.attempts + CASE WHEN v_move AND v_target LIKE 'FAILED\_%' THEN 1 ELSE 0 END,
           last_error = CASE WHEN v_move AND v_target LIKE 'FAILED\_%'
                             THEN 'carrier reported a terminal exception' ELSE x.last_error END,
           updated_at = now()
     WHERE x.order_id = p_order_id;
    INSERT INTO operations (scope, action, order_id, carrier, status, message, meta,
                            from_state, to_state, job_id, trace_id)
    VALUES ('carrier', 'tracking_event', p_order_id, p_carrier, 'OK', p_status, v_meta,
            CASE WHEN v_move THEN o.internal_state END, CASE WHEN v_move THEN v_target END,
            p_job, p_trace);
    RETURN 'ok';
END
$fn$;

-- cv_order_pending_apply (internal; the caller holds the order's row lock and the
-- order is in AWAITING_TRACKING or later): apply the order's kept events in event
-- order ((event_at, seq, id); a NULL seq first) through cv_order_track_apply and
-- delete each in the same transaction. Returns one row per event with its outcome.
CREATE FUNCTION cv_order_pending_apply(p_order_id text, p_job uuid, p_trace text)
RETURNS TABLE (pending_id bigint, carrier text, status text, event_at timestamptz,
               seq bigint, webhook_id text, outcome text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.* FROM tracking_pending p
         WHERE p.order_id = p_order_id
         ORDER BY p.event_at, p.seq NULLS FIRST, p.id
           FOR UPDATE
    LOOP
        outcome := cv_order_track_apply(p_order_id, r.carrier, r.status, r.terminal,
                                        r.event_at, r.seq, r.tracking_number, r.webhook_id,
                                        coalesce(p_job, r.job_id), coalesce(p_trace, r.trace_id),
                                        'pending');
        DELETE FROM tracking_pending p WHERE p.id = r.id;
        pending_id := r.id; carrier := r.carrier; status := r.status;
        event_at := r.event_at; seq := r.seq; webhook_id := r.webhook_id;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-- cv_order_track: one tracking event (status in the common/ostate.h vocabulary;
-- p_terminal: the carrier flagged an EXCEPTION as final), in one transaction:
--   order missing, or in PENDING_POST, POSTED or FAILED_POST
--       -> 'pending': kept in tracking_pending (applied when the order enters
--          AWAITING_TRACKING), an operations row with status PENDING. No claim is
--          needed: the order is not changed. POSTED is held back too: it lasts
--          from the carrier's answer to the recording of the tracking data by the
--          same carrier-post step, whose next edge must not race a tracking move.
--   the writer does not hold the claim (see cv_order_fence) -> 'fenced' | 'busy',
--          nothing written (the job retries).
--   (p_carrier, p_webhook_id) already seen -> 'same': an operations row with
--          status DUPLICATE, no other effect. (Checked after the fence so that a
--          fenced call does not mark the id as seen and lose the event.)
--   else -> cv_order_track_apply: 'ok' or 'stale'.
-- Returns the result and the order's internal_state after the call (NULL when
-- the order does not exist).
CREATE FUNCTION cv_order_track(p_order_id text, p_carrier text, p_status text,
                               p_terminal boolean, p_event_at timestamptz, p_seq bigint,
                               p_tracking_number text, p_webhook_id text, p_payload jsonb,
                               p_job uuid, p_epoch bigint, p_trace text)
RETURNS TABLE (result text, internal_state text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    o       record;
    v_found boolean;
    v_fence text;
BEGIN
    IF p_order_id IS NULL OR p_carrier IS NULL OR p_event_at IS NULL THEN
        RAISE EXCEPTION 'cv_order_track: NULL argument' USING ERRCODE = '22004';
    END IF;
    IF p_status IS NULL OR p_status NOT IN ('ACCEPTED', 'IN_TRANSIT', 'OUT_FOR_DELIVERY',
                                            'DELIVERED', 'EXCEPTION') THEN
        RAISE EXCEPTION 'cv_order_track: unknown status %', p_status USING ERRCODE = '22023';
    END IF;
    SELECT x.internal_state, x.lock_job, x.lock_epoch, x.lock_until INTO o
      FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    v_found := FOUND;

    IF NOT v_found OR o.internal_state IN ('PENDING_POST', 'POSTED', 'FAILED_POST') THEN
        IF p_webhook_id IS NOT NULL THEN
            INSERT INTO webhook_seen (source, webhook_id) VALUES (p_carrier, p_webhook_id)
            ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                INSERT INTO operations (scope, action, order_id, carrier, status, message,
                                        meta, job_id, trace_id)
                VALUES ('carrier', 'tracking_event', p_order_id, p_carrier, 'DUPLICATE',
                        'webhook already taken', jsonb_build_object('webhook_id', p_webhook_id),
                        p_job, p_trace);
                result := 'same'; internal_state := o.internal_state;
                RETURN NEXT;
                RETURN;
            END IF;
        END IF;
        INSERT INTO tracking_pending (order_id, carrier, status, terminal, tracking_number,
                                      event_at, seq, webhook_id, payload, job_id, trace_id)
        VALUES (p_order_id, p_carrier, p_status, coalesce(p_terminal, false),
                p_tracking_number, p_event_at, p_seq, p_webhook_id, p_payload, p_job, p_trace);
        INSERT INTO operations (scope, action, order_id, carrier, status, message, meta,
                                job_id, trace_id)
        VALUES ('carrier', 'tracking_event', p_order_id, p_carrier, 'PENDING',
                CASE WHEN v_found THEN format('kept until the order is AWAITING_TRACKING (now %s)',
                                              o.internal_state)
                     ELSE 'kept until the order exists' END,
                jsonb_build_object('carrier_status', p_status, 'event_at', p_event_at,
                                   'seq', p_seq, 'webhook_id', p_webhook_id),
                p_job, p_trace);
        result := 'pending'; internal_state := o.internal_state;
        RETURN NEXT;
        RETURN;
    END IF;

    v_fence := cv_order_fence(o.lock_job, o.lock_epoch, o.lock_until, p_job, p_epoch);
    IF v_fence IS NOT NULL THEN
        result := v_fence; internal_state := o.internal_state;
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_webhook_id IS NOT NULL THEN
        INSERT INTO webhook_seen (source, webhook_id) VALUES (p_carrier, p_webhook_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            INSERT INTO operations (scope, action, order_id, carrier, status, message, meta,
                                    job_id, trace_id)
            VALUES ('carrier', 'tracking_event', p_order_id, p_carrier, 'DUPLICATE',
                    'webhook already taken', jsonb_build_object('webhook_id', p_webhook_id),
                    p_job, p_trace);
            result := 'same'; internal_state := o.internal_state;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    result := cv_order_track_apply(p_order_id, p_carrier, p_status, coalesce(p_terminal, false),
                                   p_event_at, p_seq, p_tracking_number, p_webhook_id, p_job,
                                   p_trace, 'event');
    SELECT x.internal_state INTO internal_state FROM orders x WHERE x.order_id = p_order_id;
    RETURN NEXT;
END
$fn$;

-- cv_order_pending_take: apply and delete the kept tracking events of one order
-- now (cv_order_transition does it by itself on entering AWAITING_TRACKING; this
-- is the explicit form for a worker or an operator). Fenced like a transition.
-- Returns one row per applied event (pending_id set, outcome 'ok' or 'stale'), in
-- event order; or, when nothing could be applied, a single row with pending_id
-- NULL and outcome 'missing', 'fenced', 'busy' or 'pending' (the order is not yet
-- in AWAITING_TRACKING: the events stay). No row: nothing was kept.
CREATE FUNCTION cv_order_pending_take(p_order_id text, p_job uuid, p_epoch bigint,
                                      p_trace text)
RETURNS TABLE (pending_id bigint, carrier text, status text, event_at timestamptz,
               seq bigint, webhook_id text, outcome text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    o       record;
    v_fence text;
BEGIN
    IF p_order_id IS NULL THEN
        RAISE EXCEPTION 'cv_order_pending_take: NULL order' USING ERRCODE = '22004';
    END IF;
    SELECT x.internal_state, x.lock_job, x.lock_epoch, x.lock_until INTO o
      FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'missing';
        RETURN NEXT;
        RETURN;
    END IF;
    v_fence := cv_order_fence(o.lock_job, o.lock_epoch, o.lock_until, p_job, p_epoch);
    IF v_fence IS NOT NULL THEN
        outcome := v_fence;
        RETURN NEXT;
        RETURN;
    END IF;
    IF o.internal_state IN ('PENDING_POST', 'POSTED', 'FAILED_POST') THEN
        IF EXISTS (SELECT 1 FROM tracking_pending p WHERE p.order_id = p_order_id) THEN
            outcome := 'pending';
            RETURN NEXT;
        END IF;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM cv_order_pending_apply(p_order_id, p_job, p_trace);
END
$fn$;

-- ---- transitions -------------------------------------------------------------------

-- cv_order_transition: the one way an order changes state. In one transaction:
--   p_set has a key outside the whitelist, or p_to is no state -> raises 22023
--   no order                                     -> 'missing'
--   the writer does not hold the claim           -> 'fenced' | 'busy' (cv_order_fence),
--                                                   nothing written
--   p_to is the current state                    -> 'same': an idempotent no-op,
--                                                   nothing written (p_set ignored)
--   no order_edges row (current, p_to)           -> 'edge': nothing changes but an
--                                                   operations row with status REFUSED
--   else -> 'ok': internal_state := p_to, p_set applied, state_changed_at and
--          updated_at now; entering a FAILED_* state counts an attempt; one
--          operations row (p_scope, p_action, p_status (default OK), p_message,
--          p_meta, from/to, job, trace). Entering AWAITING_TRACKING also applies
--          the kept tracking events (cv_order_pending_apply), which may move the
--          order on to TRACKED in the same transaction.
-- p_set may set: carrier_code, tracking_number, expedition_id, carrier_status,
-- carrier_event_at, carrier_seq, mirakl_tracking_updated, last_error (a key with
-- JSON null sets NULL; an absent key keeps the value).
-- An operator write (p_job NULL) clears an expired claim, fencing its late holder.
-- Returns the result, the state after the call and how many kept events applied.
CREATE FUNCTION cv_order_transition(p_order_id text, p_to text, p_job uuid, p_epoch bigint,
                                    p_scope text, p_action text, p_status text,
                                    p_message text, p_meta jsonb, p_trace text, p_set jsonb)
RETURNS TABLE (result text, internal_state text, pending_applied int)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    o       record;
    v_fence text;
    v_bad   text;
    v_set   jsonb := coalesce(p_set, '{}'::jsonb);
BEGIN
    IF p_order_id IS NULL OR p_scope IS NULL OR p_action IS NULL THEN
        RAISE EXCEPTION 'cv_order_transition: NULL argument' USING ERRCODE = '22004';
    END IF;
    IF p_to IS NULL OR NOT EXISTS (SELECT 1 FROM order_edges e
                                    WHERE e.from_state = p_to OR e.to_state = p_to) THEN
        RAISE EXCEPTION 'cv_order_transition: unknown state %', p_to USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(v_set) <> 'object' THEN
        RAISE EXCEPTION 'cv_order_transition: set must be an object' USING ERRCODE = '22023';
    END IF;
    SELECT k INTO v_bad FROM jsonb_object_keys(v_set) AS k
     WHERE k NOT IN ('carrier_code', 'tracking_number', 'expedition_id', 'carrier_status',
                     'carrier_event_at', 'carrier_seq', 'mirakl_tracking_updated', 'last_error')
     LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'cv_order_transition: % may not be set', v_bad USING ERRCODE = '22023';
    END IF;

    SELECT x.internal_state, x.carrier_code, x.lock_job, x.lock_epoch, x.lock_until INTO o
      FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    pending_applied := 0;
    IF NOT FOUND THEN
        result := 'missing';
        RETURN NEXT;
        RETURN;
    END IF;
    internal_state := o.internal_state;
    v_fence := cv_order_fence(o.lock_job, o.lock_epoch, o.lock_until, p_job, p_epoch);
    IF v_fence IS NOT NULL THEN
        result := v_fence;
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_job IS NULL AND o.lock_job IS NOT NULL THEN
        UPDATE orders x SET lock_job = NULL, lock_until = NULL WHERE x.order_id = p_order_id;
    END IF;
    IF o.internal_state = p_to THEN
        result := 'same';
        RETURN NEXT;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM order_edges e
                    WHERE e.from_state = o.internal_state AND e.to_state = p_to) THEN
        INSERT INTO operations (scope, action, order_id, carrier, status, message, meta,
                                from_state, to_state, job_id, trace_id)
        VALUES (p_scope, p_action, p_order_id, o.carrier_code, 'REFUSED',
                format('no edge %s -> %s', o.internal_state, p_to)
                    || coalesce(': ' || p_message, ''),
                p_meta, o.internal_state, p_to, p_job, p_trace);
        result := 'edge';
        RETURN NEXT;
        RETURN;
    END IF;

    UPDATE orders x
       SET internal_state = p_to,
           carrier_code = CASE WHEN v_set ? 'carrier_code'
                               THEN v_set->>'carrier_code' ELSE x.carrier_code END,
           tracking_number = CASE WHEN v_set ? 'tracking_number'
                                  THEN v_set->>'tracking_number' ELSE x.tracking_number END,
           expedition_id = CASE WHEN v_set ? 'expedition_id'
                                THEN v_set->>'expedition_id' ELSE x.expedition_id END,
           carrier_status = CASE WHEN v_set ? 'carrier_status'
                                 THEN v_set->>'carrier_status' ELSE x.carrier_status END,
           carrier_event_at = CASE WHEN v_set ? 'carrier_event_at'
                                   THEN (v_set->>'carrier_event_at')::timestamptz
                                   ELSE x.carrier_event_at END,
           carrier_seq = CASE WHEN v_set ? 'carrier_seq'
                              THEN (v_set->>'carrier_seq')::bigint ELSE x.carrier_seq END,
           mirakl_tracking_updated = CASE WHEN v_set ? 'mirakl_tracking_updated'
                                          THEN coalesce((v_set->>'mirakl_tracking_updated')::boolean,
                                                        false)
                                          ELSE x.mirakl_tracking_updated END,
           last_error = CASE WHEN v_set ? 'last_error'
                             THEN v_set->>'last_error' ELSE x.last_error END,
           attempts = x.attempts + CASE WHEN p_to LIKE 'FAILED\_%' THEN 1 ELSE 0 END,
           state_changed_at = now(),
           updated_at = now()
     WHERE x.order_id = p_order_id;
    INSERT INTO operations (scope, action, order_id, carrier, status, message, meta,
                            from_state, to_state, job_id, trace_id)
    SELECT p_scope, p_action, p_order_id, x.carrier_code, coalesce(p_status, 'OK'), p_message,
           p_meta, o.internal_state, p_to, p_job, p_trace
      FROM orders x WHERE x.order_id = p_order_id;

    IF p_to = 'AWAITING_TRACKING' THEN
        SELECT count(*) INTO pending_applied
          FROM cv_order_pending_apply(p_order_id, p_job, p_trace);
    END IF;
    SELECT x.internal_state INTO internal_state FROM orders x WHERE x.order_id = p_order_id;
    result := 'ok';
    RETURN NEXT;
END
$fn$;

-- ---- marketplace fetch ---------------------------------------------------------------

-- cv_order_upsert: one page of a marketplace fetch (at most 1000 orders), one round
-- trip. p_orders is a JSON array of objects: order_id (required), mirakl_state,
-- weight_kg, country, shipping_deadline, customer, lines, mirakl_updated_at.
-- customer and lines may be JSON values or strings holding JSON text (common/
-- ostore.c sends strings, so raw marketplace text can never add keys to the
-- element); text that is not JSON fails the whole page (22P02), changing nothing.
-- For each element, in order_id order (the lock order):
--   new order          -> inserted as PENDING_POST, 'new', an operations row
--                         (mirakl, fetch_order, OK)
--   known, the fetched mirakl_updated_at is newer than the stored one (or nothing
--   is stored)         -> the marketplace fields take the fetched values; 'changed'
--                         with an operations row when one of them differed, else
--                         'unchanged' (only the date moved)
--   known, not newer   -> 'unchanged', nothing written (an overlapping or older
--                         page; a fetch without a date never overwrites)
-- internal_state and every field of ours are never touched: a re-fetch of a
-- TRACKED order leaves it TRACKED. Returns one row per element with its outcome,
-- the order's internal_state and carrier_code. Raises 22023 when p_orders is not
-- an array of objects or is too long, 22004 when an element has no order_id.
CREATE FUNCTION cv_order_upsert(p_orders jsonb, p_job uuid, p_trace text)
RETURNS TABLE (order_id text, outcome text, internal_state text, carrier_code text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    r         record;
    o         record;
    v_changed boolean;
BEGIN
    IF p_orders IS NULL OR jsonb_typeof(p_orders) <> 'array' THEN
        RAISE EXCEPTION 'cv_order_upsert: orders must be an array' USING ERRCODE = '22023';
    END IF;
    IF jsonb_array_length(p_orders) > 1000 THEN
        RAISE EXCEPTION 'cv_order_upsert: more than 1000 orders' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_orders) e(v)
                WHERE jsonb_typeof(e.v) <> 'object') THEN
        RAISE EXCEPTION 'cv_order_upsert: every order must be an object' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_orders) e(v)
                WHERE coalesce(e.v->>'order_id', '') = '') THEN
        RAISE EXCEPTION 'cv_order_upsert: an order without order_id' USING ERRCODE = '22004';
    END IF;

    FOR r IN
        SELECT e.v->>'order_id' AS oid,
               e.v->>'mirakl_state' AS mirakl_state,
               (e.v->>'weight_kg')::numeric AS weight_kg,
               e.v->>'country' AS country,
               (e.v->>'shipping_deadline')::timestamptz AS shipping_deadline,
               (e.v->>'customer')::jsonb AS customer,
               (e.v->>'lines')::jsonb AS lines,
               (e.v->>'mirakl_updated_at')::timestamptz AS upd
          FROM jsonb_array_elements(p_orders) WITH ORDINALITY AS e(v, ord)
         ORDER BY e.v->>'order_id', e.ord
    LOOP
        order_id := r.oid;
        INSERT INTO orders AS x (order_id, internal_state, mirakl_state, weight_kg, country,
                                 shipping_deadline, customer, lines, mirakl_updated_at,
                                 fetched_at)
        VALUES (r.oid, 'PENDING_POST', r.mirakl_state, r.weight_kg, r.country,
                r.shipping_deadline, r.customer, r.lines, r.upd, now())
        ON CONFLICT (order_id) DO NOTHING;
        IF FOUND THEN
            INSERT INTO operations (scope, action, order_id, status, message, meta, to_state,
                                    job_id, trace_id)
            VALUES ('mirakl', 'fetch_order', r.oid, 'OK', 'new order',
                    jsonb_build_object('mirakl_state', r.mirakl_state,
                                       'mirakl_updated_at', r.upd),
                    'PENDING_POST', p_job, p_trace);
            outcome := 'new'; internal_state := 'PENDING_POST'; carrier_code := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;

        SELECT x.internal_state, x.carrier_code, x.mirakl_state, x.weight_kg, x.country,
               x.shipping_deadline, x.customer, x.lines, x.mirakl_updated_at
          INTO o
          FROM orders x WHERE x.order_id = r.oid FOR UPDATE;
        internal_state := o.internal_state;
        carrier_code := o.carrier_code;
        outcome := 'unchanged';
        IF r.upd IS NOT NULL AND (o.mirakl_updated_at IS NULL OR r.upd > o.mirakl_updated_at) THEN
            v_changed := (o.mirakl_state, o.weight_kg, o.country, o.shipping_deadline,
                          o.customer, o.lines)
                         IS DISTINCT FROM (r.mirakl_state, r.weight_kg, r.country,
                                           r.shipping_deadline, r.customer, r.lines);
            UPDATE orders x
               SET mirakl_state = r.mirakl_state, weight_kg = r.weight_kg, country = r.country,
                   shipping_deadline = r.shipping_deadline, customer = r.customer,
                   lines = r.lines, mirakl_updated_at = r.upd, fetched_at = now(),
                   updated_at = CASE WHEN v_changed THEN now() ELSE x.updated_at END
             WHERE x.order_id = r.oid;
            IF v_changed THEN
                INSERT INTO operations (scope, action, order_id, carrier, status, message,
                                        meta, job_id, trace_id)
                VALUES ('mirakl', 'fetch_order', r.oid, o.carrier_code, 'OK', 'order changed',
                        jsonb_build_object('mirakl_state', r.mirakl_state,
                                           'previous_mirakl_state', o.mirakl_state,
                                           'mirakl_updated_at', r.upd),
                        p_job, p_trace);
                outcome := 'changed';
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
