-- 0001_init.sql - accounts, offers, transactions, user_offers and the two
-- functions that move money for `activation` jobs.
--
-- How migrations work (read before adding one):
--   * `conveyorctl migrate` applies every migrations/NNNN_name.sql not yet
--     listed in schema_migrations, in file-name order, each file in its own
--     transaction together with its schema_migrations row. So a file must not
--     contain BEGIN/COMMIT, and must not use statements that refuse to run in
--     a transaction (CREATE INDEX CONCURRENTLY, VACUUM, ALTER TYPE ... ADD VALUE
--     before PostgreSQL 12): ship those in a file of their own, written so
--     that re-running it is harmless, and say so in its header.
--   * Never edit a file after it is merged: databases that already applied it
--     would never see the change. Fix things forward with the next number
--     (0002_..., 0003_...; four digits, no gaps needed, never reuse one).
--   * Workers of the previous release keep running during a deploy. Make each
--     change work with both releases (expand, then contract a release later):
--     add nullable or defaulted columns; drop a column only once no running
--     code reads it.
--   * Functions are called by name and signature from common/ code. Change a
--     body with CREATE OR REPLACE FUNCTION in a new file. Change a signature
--     or a result column by adding a new function (cv_activation_reserve_v2)
--     and dropping the old one a release later.
--   * The status strings ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILED') and the
--     outcome strings returned by the functions are part of the contract with
--     worker code: add new ones only together with code that understands them.

CREATE TABLE accounts (
    user_id    bigint PRIMARY KEY,
    balance    numeric(14,2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE offers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    price         numeric(14,2) NOT NULL CHECK (price >= 0),
    duration_days int NOT NULL CHECK (duration_days > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per activation request, keyed by the client's transaction_id. No
-- foreign keys: a request for an unknown offer or user is still recorded, as
-- FAILED. lease_epoch is the fencing token of the job delivery that last
-- touched the row: a delivery with a smaller epoch may not change it.
CREATE TABLE transactions (
    id             bigserial PRIMARY KEY,
    transaction_id uuid NOT NULL,
    user_id        bigint NOT NULL,
    offer_id       bigint NOT NULL,
    amount         numeric(14,2) NOT NULL DEFAULT 0,
    status         text NOT NULL
                   CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILED')),
    lease_epoch    bigint NOT NULL DEFAULT 0,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    CONSTRAINT transactions_transaction_id_key UNIQUE (transaction_id)
);
CREATE INDEX transactions_user_created_idx ON transactions (user_id, created_at DESC);

CREATE TABLE user_offers (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL,
    offer_id        bigint NOT NULL,
    transaction_id  uuid NOT NULL,
    is_active       boolean NOT NULL DEFAULT false,
    expiration_date timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_offers_transaction_id_key UNIQUE (transaction_id)
);
CREATE INDEX user_offers_user_idx ON user_offers (user_id);

-- Locking rules shared by both functions, so that concurrent batches never
-- deadlock: elements are handled in (user_id, transaction_id) order, and for
-- each user the accounts row is locked (FOR UPDATE) before any transactions
-- row of that user. The user_id used for ordering is the stored row's when the
-- transaction exists (it never changes), else the requested one.

-- cv_activation_reserve: first step of an activation, one call per batch.
--
-- For each element (transaction id, user, offer, lease epoch of the delivery):
--   row exists, lease_epoch > p_epoch   -> 'fenced'   nothing changes
--   row exists, PROCESSING              -> 'proceed'  lease_epoch := p_epoch
--   row exists, SUCCESS or FAILED       -> 'done'     lease_epoch := p_epoch
--   row exists, PENDING, or no row:
--     offer missing                     -> 'rejected' FAILED, amount 0, 'offer not found'
--     account missing                   -> 'rejected' FAILED, amount 0, 'account not found'
--     balance < price                   -> 'rejected' FAILED, amount price,
--                                                     'insufficient balance', no debit
--     else                              -> 'proceed'  balance -= price, PROCESSING,
--                                                     amount price
-- The balance is debited at most once per transaction_id, whatever the number
-- of deliveries. A PENDING row (written by a producer ahead of the job) is
-- decided with its own user_id and offer_id. Returns one row per element, in
-- processing order, with the row's status, amount and error after the call.
-- Raises 22023 when the arrays differ in length, 22004 on a NULL element.
CREATE FUNCTION cv_activation_reserve(p_txn uuid[], p_user bigint[], p_offer bigint[],
                                      p_epoch bigint[])
RETURNS TABLE (transaction_id uuid, outcome text, status text, amount numeric, error text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    r        record;
    tx       record;
    v_uid    bigint;
    v_oid    bigint;
    v_price  numeric;
    v_bal    numeric;
    v_found  boolean;
    v_status text;
    v_amount numeric;
    v_error  text;
    n        int := coalesce(array_length(p_txn, 1), 0);
BEGIN
    IF coalesce(array_length(p_user, 1), 0) <> n OR coalesce(array_length(p_offer, 1), 0) <> n
       OR coalesce(array_length(p_epoch, 1), 0) <> n THEN
        RAISE EXCEPTION 'cv_activation_reserve: arrays differ in length' USING ERRCODE = '22023';
    END IF;
    IF array_position(p_txn, NULL) IS NOT NULL OR array_position(p_user, NULL) IS NOT NULL
       OR array_position(p_offer, NULL) IS NOT NULL
       OR array_position(p_epoch, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'cv_activation_reserve: NULL element' USING ERRCODE = '22004';
    END IF;

    FOR r IN
        SELECT u.txn, u.uid, u.oid, u.ep, coalesce(t.user_id, u.uid) AS lock_uid
          FROM unnest(p_txn, p_user, p_offer, p_epoch) WITH ORDINALITY AS u(txn, uid, oid, ep, ord)
          LEFT JOIN transactions t ON t.transaction_id = u.txn
         ORDER BY coalesce(t.user_id, u.uid), u.txn, u.ord
    LOOP
        -- the account first (see the locking rules); a no-op when already held
        SELECT a.balance INTO v_bal FROM accounts a WHERE a.user_id = r.lock_uid FOR UPDATE;

        LOOP    -- at most twice: once more when a concurrent insert wins
            SELECT t.id, t.user_id, t.offer_id, t.status, t.amount, t.error, t.lease_epoch
              INTO tx
              FROM transactions t
             WHERE t.transaction_id = r.txn
               FOR UPDATE;
            v_found := FOUND;

            IF v_found AND tx.lease_epoch > r.ep THEN
                transaction_id := r.txn; outcome := 'fenced'; status := tx.status;
                amount := tx.amount; error := tx.error;
                EXIT;
            END IF;

            IF v_found AND tx.status <> 'PENDING' THEN
                UPDATE transactions t SET lease_epoch = r.ep, updated_at = now()
                 WHERE t.id = tx.id;
                transaction_id := r.txn;
                outcome := CASE WHEN tx.status = 'PROCESSING' THEN 'proceed' ELSE 'done' END;
                status := tx.status; amount := tx.amount; error := tx.error;
                EXIT;
            END IF;

            -- decide: a new request, or a PENDING row not yet charged
            IF v_found THEN
                v_uid := tx.user_id;
                v_oid := tx.offer_id;
            ELSE
                v_uid := r.uid;
                v_oid := r.oid;
            END IF;
            IF v_uid <> r.lock_uid THEN
                -- only when a PENDING row appeared after the batch was ordered and
                -- names another user: lock that account as well (out of order; a
                -- deadlock here fails the batch with 40P01, which callers retry)
                SELECT a.balance INTO v_bal FROM accounts a WHERE a.user_id = v_uid FOR UPDATE;
            END IF;
            v_price := NULL;
            SELECT o.price INTO v_price FROM offers o WHERE o.id = v_oid;
            v_error := NULL;
            IF v_price IS NULL THEN
                v_status := 'FAILED'; v_amount := 0.00; v_error := 'offer not found';
            ELSIF v_bal IS NULL THEN
                v_status := 'FAILED'; v_amount := 0.00; v_error := 'account not found';
            ELSIF v_bal < v_price THEN
                v_status := 'FAILED'; v_amount := v_price; v_error := 'insufficient balance';
            ELSE
                v_status := 'PROCESSING'; v_amount := v_price;
            END IF;

            IF v_found THEN
                UPDATE transactions t
                   SET status = v_status, amount = v_amount, error = v_error,
                       lease_epoch = r.ep, updated_at = now(),
                       completed_at = CASE WHEN v_status = 'FAILED' THEN now() END
                 WHERE t.id = tx.id;
            ELSE
                INSERT INTO transactions (transaction_id, user_id, offer_id, amount, status,
                                          lease_epoch, error, completed_at)
                VALUES (r.txn, v_uid, v_oid, v_amount, v_status, r.ep, v_error,
                        CASE WHEN v_status = 'FAILED' THEN now() END)
                ON CONFLICT ON CONSTRAINT transactions_transaction_id_key DO NOTHING;
                IF NOT FOUND THEN
                    CONTINUE;   -- a concurrent call inserted it first: judge its row
                END IF;
            END IF;

            IF v_status = 'PROCESSING' THEN
                UPDATE accounts a SET balance = a.balance - v_price, updated_at = now()
                 WHERE a.user_id = v_uid;
            END IF;
            transaction_id := r.txn;
            outcome := CASE WHEN v_status = 'PROCESSING' THEN 'proceed' ELSE 'rejected' END;
            status := v_status; amount := v_amount; error := v_error;
            EXIT;
        END LOOP;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-- cv_activation_finish: last step of an activation, after the carrier answered.
--
-- For each element (transaction id, ok, lease epoch of the delivery, error):
--   no row                          -> 'missing'  (status NULL)
--   lease_epoch > p_epoch           -> 'fenced'   nothing changes
--   status <> 'PROCESSING'          -> 'done'     nothing changes (no second refund
--                                                 or second user_offers row)
--   ok                              -> 'success'  SUCCESS, completed_at now(), a
--                                                 user_offers row (active, expiring
--                                                 after the offer's duration_days)
--   not ok                          -> 'failed'   FAILED, error p_error, balance +=
--                                                 amount (the refund)
-- Returns one row per element with the row's status after the call.
-- Raises 22023 when the arrays differ in length, 22004 on a NULL txn, ok or
-- epoch (p_error elements may be NULL).
CREATE FUNCTION cv_activation_finish(p_txn uuid[], p_ok boolean[], p_epoch bigint[],
                                     p_error text[])
RETURNS TABLE (transaction_id uuid, outcome text, status text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    r      record;
    tx     record;
    v_days int;
    n      int := coalesce(array_length(p_txn, 1), 0);
BEGIN
    IF coalesce(array_length(p_ok, 1), 0) <> n OR coalesce(array_length(p_epoch, 1), 0) <> n
       OR coalesce(array_length(p_error, 1), 0) <> n THEN
        RAISE EXCEPTION 'cv_activation_finish: arrays differ in length' USING ERRCODE = '22023';
    END IF;
    IF array_position(p_txn, NULL) IS NOT NULL OR array_position(p_ok, NULL) IS NOT NULL
       OR array_position(p_epoch, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'cv_activation_finish: NULL element' USING ERRCODE = '22004';
    END IF;

    FOR r IN
        SELECT u.txn, u.ok, u.ep, u.err, t.user_id AS lock_uid
          FROM unnest(p_txn, p_ok, p_epoch, p_error) WITH ORDINALITY AS u(txn, ok, ep, err, ord)
          LEFT JOIN transactions t ON t.transaction_id = u.txn
         ORDER BY t.user_id NULLS LAST, u.txn, u.ord
    LOOP
        transaction_id := r.txn;
        IF r.lock_uid IS NOT NULL THEN
            PERFORM 1 FROM accounts a WHERE a.user_id = r.lock_uid FOR UPDATE;
        END IF;
        SELECT t.id, t.user_id, t.offer_id, t.status, t.amount, t.lease_epoch
          INTO tx
          FROM transactions t
         WHERE t.transaction_id = r.txn
           FOR UPDATE;
        IF NOT FOUND THEN
            outcome := 'missing'; status := NULL;
        ELSIF tx.lease_epoch > r.ep THEN
            outcome := 'fenced'; status := tx.status;
        ELSIF tx.status <> 'PROCESSING' THEN
            outcome := 'done'; status := tx.status;
        ELSIF r.ok THEN
            UPDATE transactions t
               SET status = 'SUCCESS', error = NULL, completed_at = now(), updated_at = now()
             WHERE t.id = tx.id;
            SELECT o.duration_days INTO v_days FROM offers o WHERE o.id = tx.offer_id;
            -- the offer was there at reserve time; if it was deleted since, the
            -- activation still happened: record it, expiring now
            INSERT INTO user_offers (user_id, offer_id, transaction_id, is_active,
                                     expiration_date)
            VALUES (tx.user_id, tx.offer_id, r.txn, true,
                    now() + make_interval(days => coalesce(v_days, 0)))
            ON CONFLICT ON CONSTRAINT user_offers_transaction_id_key DO NOTHING;
            outcome := 'success'; status := 'SUCCESS';
        ELSE
            UPDATE transactions t
               SET status = 'FAILED', error = r.err, completed_at = now(), updated_at = now()
             WHERE t.id = tx.id;
            UPDATE accounts a SET balance = a.balance + tx.amount, updated_at = now()
             WHERE a.user_id = tx.user_id;
            outcome := 'failed'; status := 'FAILED';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
