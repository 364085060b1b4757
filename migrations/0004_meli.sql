-- 0004_meli.sql - Mercado Livre resources as last fetched (seed 002: a
-- notification is only a hint; the job GETs the resource and applies it only
-- when it changed).
--
-- One row per resource ("/orders/2000001", "/items/MLB123", "/messages/..."),
-- written by cv_ml_apply (worker/h_ml_notification.c) in one transaction:
--   no row yet                      -> insert it, an operations row, 'new'
--   the same body (hash)            -> fetched_at only, 'unchanged'
--   a body whose last_updated is older than the stored one (a slow fetch
--   that lost a race with a newer one)
--                                   -> fetched_at only, 'stale'
--   else                            -> body, hash, updated_at, changed_at and an
--                                      operations row, 'changed'
-- The hash is SHA-256 of the body's jsonb text: jsonb normalises key order and
-- white space, so a re-serialised but equal answer is 'unchanged'. The
-- operations row: scope 'meli', action order_updated / item_updated /
-- message_updated by topic, order_id the Mercado Livre order id for orders_v2
-- (these ids are numbers, never our marketplace's order ids), meta {topic,
-- resource, hash, new}.
CREATE TABLE ml_resources (
    resource   text PRIMARY KEY,
    topic      text NOT NULL,
    body       jsonb NOT NULL,
    hash       text NOT NULL,
    updated_at timestamptz,                 -- the body's last_updated, when it has one
    fetched_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ml_resources_changed_idx ON ml_resources (changed_at);

CREATE FUNCTION cv_ml_apply(p_topic text, p_resource text, p_body jsonb, p_job_id uuid,
                            p_trace_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_hash   text := encode(sha256(convert_to(p_body::text, 'UTF8')), 'hex');
    v_at     timestamptz;
    v_new    boolean := false;
    v_action text;
    o        record;
BEGIN
    BEGIN
        v_at := (p_body->>'last_updated')::timestamptz;
    EXCEPTION WHEN others THEN
        v_at := NULL;                       -- not a timestamp: no ordering by it
    END;
    INSERT INTO ml_resources (resource, topic, body, hash, updated_at)
    VALUES (p_resource, p_topic, p_body, v_hash, v_at)
    ON CONFLICT (resource) DO NOTHING;
    IF FOUND THEN
        v_new := true;
    ELSE
        SELECT hash, updated_at INTO o FROM ml_resources WHERE resource = p_resource FOR UPDATE;
        IF o.hash = v_hash THEN
            UPDATE ml_resources SET fetched_at = clock_timestamp() WHERE resource = p_resource;
            RETURN 'unchanged';
        END IF;
        IF v_at IS NOT NULL AND o.updated_at IS NOT NULL AND v_at < o.updated_at THEN
            UPDATE ml_resources SET fetched_at = clock_timestamp() WHERE resource = p_resource;
            RETURN 'stale';
        END IF;
        UPDATE ml_resources
           SET topic = p_topic, body = p_body, hash = v_hash, updated_at = v_at,
               fetched_at = clock_timestamp(), changed_at = clock_timestamp()
         WHERE resource = p_resource;
    END IF;
    v_action := CASE p_topic WHEN 'orders_v2' THEN 'order_updated'
                             WHEN 'items' THEN 'item_updated'
                             WHEN 'messages' THEN 'message_updated'
                             ELSE p_topic || '_updated' END;
    INSERT INTO operations (scope, action, order_id, status, message, meta, job_id, trace_id)
    VALUES ('meli', v_action,
            CASE WHEN p_topic = 'orders_v2' THEN p_body->>'id' END,
            'OK',
            CASE WHEN p_body ? 'status' THEN 'status ' || (p_body->>'status') END,
            jsonb_build_object('topic', p_topic, 'resource', p_resource, 'hash', v_hash,
                               'new', v_new),
            p_job_id, p_trace_id);
    RETURN CASE WHEN v_new THEN 'new' ELSE 'changed' END;
END;
$$;
