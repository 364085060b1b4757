-- 0009_claim_age.sql - an order's age in the rows of cv_order_claim_many.
--
-- conveyor_order_fetch_to_complete_seconds (issue 9, seed 004's latency) is
-- observed by the push that completes an order: the time from the order's
-- first fetch (its row's created_at) to COMPLETE. The claim that starts the
-- push reads the age on PostgreSQL's clock (age_ms, no clock skew between
-- hosts); the worker adds the time it spent since, on its monotonic clock.
-- Otherwise as 0007's (a changed result type: dropped and created again).
DROP FUNCTION cv_order_claim_many(jsonb, int);
CREATE FUNCTION cv_order_claim_many(p_items jsonb, p_ttl_ms int)
RETURNS TABLE (i int, result text, internal_state text, carrier_code text,
               tracking_number text, country text, weight_kg text, customer text,
               attempts int, last_error text, mirakl_tracking_updated boolean, age_ms bigint)
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
                                o.last_error, o.mirakl_tracking_updated,
                                (extract(epoch FROM clock_timestamp() - o.created_at)
                                 * 1000)::bigint
                           FROM orders o WHERE o.order_id = it.order_id;
        ELSE
            RETURN QUERY SELECT it.i, r, NULL::text, NULL::text, NULL::text, NULL::text,
                                NULL::text, NULL::text, NULL::int, NULL::text, NULL::boolean,
                                NULL::bigint;
        END IF;
    END LOOP;
END
$fn$;
