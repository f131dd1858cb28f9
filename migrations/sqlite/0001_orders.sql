-- Orders, their idempotency keys and their event log (SQLite dialect).
-- Money is exact decimal text; times are fixed-width RFC 3339 UTC text, which sorts as time.

CREATE TABLE orders (
    id               TEXT    NOT NULL PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    currency         TEXT    NOT NULL,
    address          TEXT    NOT NULL,           -- JSON
    items            TEXT    NOT NULL,           -- JSON, prices as exact numbers
    total            TEXT    NOT NULL,           -- exact decimal
    status           TEXT    NOT NULL,
    step             TEXT    NOT NULL,           -- the saga's next step; 'done' when settled
    reservation_id   TEXT,
    payment_id       TEXT    NOT NULL,
    shipment_id      TEXT    NOT NULL,
    progress         TEXT    NOT NULL,           -- JSON: what each step did, compensations
    failure          TEXT,                       -- JSON
    response_status  INTEGER,                    -- the first answer, replayed for its key
    response_body    TEXT,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
) STRICT;

CREATE INDEX orders_by_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_by_status ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_unsettled ON orders (lease_expires_at) WHERE step <> 'done';

CREATE TABLE idempotency_keys (
    user_id     TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
) STRICT;

CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE order_events (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    order_id        TEXT    NOT NULL,
    at              TEXT    NOT NULL,
    step            TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    attempt         INTEGER,
    upstream_status INTEGER,
    duration_ms     INTEGER,
    detail          TEXT
) STRICT;

CREATE INDEX order_events_by_order ON order_events (order_id, id);
