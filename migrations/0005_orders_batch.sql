-- 0005_orders_batch.sql - the order functions of 0002 for a whole batch of
-- deliveries in one round trip (a worker works 64 orders at a time: one
-- statement to claim and read them all, one to move them all).
--
-- Both functions only call 0002's functions (cv_order_claim, cv_order_transition,
-- cv_order_release), so the rules (fencing, the edge table, the operations
-- rows, kept tracking events) stay in one place. Orders are taken in order_id
-- order, so two workers' batches that share orders lock them in the same
-- order and cannot deadlock. One statement is one transaction: a batch is
-- applied whole or, on an error, not at all (the caller retries it).

-- cv_order_claim_many(p_items, p_ttl_ms): p_items is a JSON array of
-- {"i": caller's index, "order_id", "job", "epoch"}. One row per item: the
-- claim's answer (as cv_order_claim) and, when claimed, the order as a
-- carrier post or a push needs it.
CREATE FUNCTION cv_order_claim_many(p_items jsonb, p_ttl_ms int)
RETURNS TABLE (i int, result text, internal_state text, carrier_code text,
               tracking_number text, country text, weight_kg text, customer text,
               attempts int, last_error text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    it record;
    r  text;
BEGIN
    FOR it IN SELECT (e->>'i')::int AS i, e->>'order_id' AS order_id, (e->>'job')::uuid AS job,
                     (e->>'epoch')::bigint AS epoch
                FROM jsonb_array_elements(p_items) e ORDER BY e->>'order_id'
    LOOP
        r := cv_order_claim(it.order_id, it.job, it.epoch, p_ttl_ms);
        IF r = 'claimed' THEN
            RETURN QUERY SELECT it.i, r, o.internal_state, o.carrier_code, o.tracking_number,
                                o.country, o.weight_kg::text, o.customer::text, o.attempts,
                                o.last_error
                           FROM orders o WHERE o.order_id = it.order_id;
        ELSE
            RETURN QUERY SELECT it.i, r, NULL::text, NULL::text, NULL::text, NULL::text,
                                NULL::text, NULL::text, NULL::int, NULL::text;
        END IF;
    END LOOP;
END
$fn$;

-- cv_order_move_many(p_items): p_items is a JSON array of {"i", "order_id",
-- "job", "epoch", "trace", "release": bool, "steps": [{"to", "scope",
-- "action", "status", "message", "meta", "set"}, ...]}. Each item's steps are
-- applied in order through cv_order_transition, stopping at the first that
-- is neither 'ok' nor 'same'; then its claim is released when asked (and the
-- item was not fenced). One row per item: the last step's answer, the state,
-- and how many kept tracking events applied.
CREATE FUNCTION cv_order_move_many(p_items jsonb)
RETURNS TABLE (i int, result text, internal_state text, pending_applied int)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    it  record;
    st  jsonb;
    t   record;
    res text;
    sta text;
    pa  int;
BEGIN
    FOR it IN SELECT (e->>'i')::int AS i, e->>'order_id' AS order_id, (e->>'job')::uuid AS job,
                     (e->>'epoch')::bigint AS epoch, e->>'trace' AS trace,
                     coalesce((e->>'release')::boolean, false) AS release,
                     coalesce(e->'steps', '[]'::jsonb) AS steps
                FROM jsonb_array_elements(p_items) e ORDER BY e->>'order_id'
    LOOP
        res := 'same';
        sta := NULL;
        pa := 0;
        FOR st IN SELECT s FROM jsonb_array_elements(it.steps) s LOOP
            SELECT * INTO t
              FROM cv_order_transition(it.order_id, st->>'to', it.job, it.epoch,
                                       st->>'scope', st->>'action', st->>'status',
                                       st->>'message', st->'meta', it.trace, st->'set');
            res := t.result;
            sta := t.internal_state;
            pa := pa + coalesce(t.pending_applied, 0);
            EXIT WHEN res NOT IN ('ok', 'same');
        END LOOP;
        IF it.release AND res IS DISTINCT FROM 'fenced' THEN
            PERFORM cv_order_release(it.order_id, it.job, it.epoch);
        END IF;
        RETURN QUERY SELECT it.i, res, sta, pa;
    END LOOP;
END
$fn$;
