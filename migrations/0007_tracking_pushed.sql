-- 0007_tracking_pushed.sql - remember Mirakl's OR23 without leaving TRACKED.
--
-- A push is two calls (OR23 tracking, OR24 ship) and the table of seed 004 has
-- one failed edge for it, TRACKED -> FAILED_PUSH; MIRAKL_OK may only go on to
-- COMPLETE. So the order stays TRACKED until both calls are done, and then
-- moves TRACKED -> MIRAKL_OK -> COMPLETE in one statement. What a push that
-- stops between the calls (Mirakl's budget spent, a crash, a 5xx on OR24) must
-- not forget is that OR23 went through: cv_order_mark_tracking_pushed sets
-- mirakl_tracking_updated under the job's claim (fenced like a transition) and
-- logs it, so the next delivery does OR24 only and a tight budget is never
-- spent on OR23 again and again. A failed OR24 ends FAILED_PUSH like any
-- failed push; its retry edge back to TRACKED keeps the mark.

-- cv_order_mark_tracking_pushed: 'ok' (marked, with an operations row), 'same'
-- (marked already), or the fence's answer ('fenced', 'busy'), or 'missing'.
CREATE FUNCTION cv_order_mark_tracking_pushed(p_order_id text, p_job uuid, p_epoch bigint,
                                              p_trace text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    o       record;
    v_fence text;
BEGIN
    SELECT x.internal_state, x.mirakl_tracking_updated, x.lock_job, x.lock_epoch, x.lock_until
      INTO o FROM orders x WHERE x.order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    v_fence := cv_order_fence(o.lock_job, o.lock_epoch, o.lock_until, p_job, p_epoch);
    IF v_fence IS NOT NULL THEN
        RETURN v_fence;
    END IF;
    IF o.mirakl_tracking_updated THEN
        RETURN 'same';
    END IF;
    UPDATE orders x SET mirakl_tracking_updated = true, updated_at = now()
     WHERE x.order_id = p_order_id;
    INSERT INTO operations (scope, action, order_id, status, message, job_id, trace_id)
    VALUES ('mirakl', 'update_tracking', p_order_id, 'OK',
            'tracking sent (OR23); the ship (OR24) follows', p_job, p_trace);
    RETURN 'ok';
END
$fn$;

-- cv_order_claim_many, as 0005's, with mirakl_tracking_updated in its rows (a
-- changed result type: dropped and created again).
DROP FUNCTION cv_order_claim_many(jsonb, int);
CREATE FUNCTION cv_order_claim_many(p_items jsonb, p_ttl_ms int)
RETURNS TABLE (i int, result text, internal_state text, carrier_code text,
               tracking_number text, country text, weight_kg text, customer text,
               attempts int, last_error text, mirakl_tracking_updated boolean)
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
                                o.last_error, o.mirakl_tracking_updated
                           FROM orders o WHERE o.order_id = it.order_id;
        ELSE
            RETURN QUERY SELECT it.i, r, NULL::text, NULL::text, NULL::text, NULL::text,
                                NULL::text, NULL::text, NULL::int, NULL::text, NULL::boolean;
        END IF;
    END LOOP;
END
$fn$;
