-- 0006_webhook_received.sql - seed 004 logs a carrier's tracking update as
-- carrier.webhook_received; 0002 named it carrier.tracking_event. The two
-- functions that write those rows are replaced (same signatures, same logic),
-- only the action's name changes. Rows written before keep their old name.

CREATE OR REPLACE FUNCTION cv_order_track_apply(p_order_id text, p_carrier text, p_status text,
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
        VALUES ('carrier', 'webhook_received', p_order_id, p_carrier, 'STALE',
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
    VALUES ('carrier', 'webhook_received', p_order_id, p_carrier, 'OK', p_status, v_meta,
            CASE WHEN v_move THEN o.internal_state END, CASE WHEN v_move THEN v_target END,
            p_job, p_trace);
    RETURN 'ok';
END
$fn$;

CREATE OR REPLACE FUNCTION cv_order_track(p_order_id text, p_carrier text, p_status text,
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
                VALUES ('carrier', 'webhook_received', p_order_id, p_carrier, 'DUPLICATE',
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
        VALUES ('carrier', 'webhook_received', p_order_id, p_carrier, 'PENDING',
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
            VALUES ('carrier', 'webhook_received', p_order_id, p_carrier, 'DUPLICATE',
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
