-- 0003_carrier_rules.sql - which carrier takes an order (seed 004, "Select Carrier").
--
-- Rules are rows, read by the workers (cached for a minute), so an operator
-- changes them with SQL and no restart: the first enabled rule by position
-- that matches wins. A rule matches when every condition it sets holds:
--   international   the order ships outside orders.home_country
--   weight_op/kg    the order's weight compared with weight_kg ('<' or '<=')
-- A rule with no condition matches every order (the fallback). Seed 004's
-- defaults: international -> Correos Express; else under 1 kg -> OnTime;
-- 1 to 5 kg -> TIPSA; over 5 kg -> SEUR.
CREATE TABLE carrier_rules (
    position      int PRIMARY KEY,
    international boolean,                 -- NULL: either
    weight_op     text CHECK (weight_op IN ('<', '<=')),
    weight_kg     numeric(12,3),
    carrier       text NOT NULL CHECK (carrier IN ('tipsa', 'seur', 'correos-express', 'ontime')),
    enabled       boolean NOT NULL DEFAULT true,
    note          text,
    CHECK ((weight_op IS NULL) = (weight_kg IS NULL))
);

INSERT INTO carrier_rules (position, international, weight_op, weight_kg, carrier, note) VALUES
    (10, true, NULL, NULL, 'correos-express', 'international'),
    (20, NULL, '<', 1, 'ontime', 'under 1 kg'),
    (30, NULL, '<=', 5, 'tipsa', '1 to 5 kg'),
    (40, NULL, NULL, NULL, 'seur', 'over 5 kg');
