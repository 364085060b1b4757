-- tests/chaos/audit.sql - what the chaos kit installs in ITS OWN database (never a real one)
-- after `conveyorctl migrate` and `conveyorctl seed`, before any job runs.
--
-- 1. Ten "poor" accounts (users 1..10) start with 60.00 instead of the seeded 1000.00, so
--    that an even spread of activations over the users runs some of them out of money
--    (insufficient balance) even in a short run.
-- 2. chaos_initial: every balance at the start.
-- 3. An audit trail written by triggers in the same PostgreSQL transaction as the change
--    itself, so it survives `pg_ctl restart -m immediate` exactly as the change does:
--      chaos_txlog   one row per status change of a transactions row (an insert counts as
--                    a change from NULL): a debit is a change into PROCESSING, a refund a
--                    change from PROCESSING to FAILED;
--      chaos_ledger  one row per balance change of an accounts row.
--    `cv-chaos check` counts debits and refunds per transaction from chaos_txlog, and checks
--    per account that chaos_ledger moved exactly the money those status changes imply.
--    The triggers only observe: they change nothing the code under test reads.

UPDATE accounts SET balance = 60.00 WHERE user_id BETWEEN 1 AND 10;

DROP TABLE IF EXISTS chaos_initial, chaos_txlog, chaos_ledger;
CREATE TABLE chaos_initial AS SELECT user_id, balance FROM accounts;

CREATE TABLE chaos_txlog (
    seq            bigserial PRIMARY KEY,
    transaction_id uuid NOT NULL,
    user_id        bigint NOT NULL,
    old_status     text,
    new_status     text NOT NULL,
    amount         numeric(14,2) NOT NULL,
    xid            bigint NOT NULL DEFAULT txid_current(),
    at             timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE chaos_ledger (
    seq     bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    delta   numeric(14,2) NOT NULL,
    xid     bigint NOT NULL DEFAULT txid_current(),
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION chaos_txlog_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO chaos_txlog (transaction_id, user_id, old_status, new_status, amount)
        VALUES (NEW.transaction_id, NEW.user_id,
                CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, NEW.amount);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION chaos_ledger_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.balance IS DISTINCT FROM OLD.balance THEN
        INSERT INTO chaos_ledger (user_id, delta) VALUES (NEW.user_id, NEW.balance - OLD.balance);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER chaos_txlog AFTER INSERT OR UPDATE ON transactions
    FOR EACH ROW EXECUTE FUNCTION chaos_txlog_fn();
CREATE TRIGGER chaos_ledger AFTER UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION chaos_ledger_fn();
