-- Orders, their idempotency keys and their event log (PostgreSQL dialect).

CREATE TABLE orders (
    id               UUID        NOT NULL PRIMARY KEY,
    user_id          TEXT        NOT NULL,
    currency         TEXT        NOT NULL,
    address          JSONB       NOT NULL,
    items            JSONB       NOT NULL,
    total            NUMERIC     NOT NULL,
    status           TEXT        NOT NULL,
    step             TEXT        NOT NULL,      -- the saga's next step; 'done' when settled
    reservation_id   TEXT,
    payment_id       TEXT        NOT NULL,
    shipment_id      TEXT        NOT NULL,
    progress         JSONB       NOT NULL,      -- what each step did, compensations
    failure          JSONB,
    response_status  INTEGER,                   -- the first answer, replayed for its key
    response_body    TEXT,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX orders_by_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_by_status ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_unsettled ON orders (lease_expires_at) WHERE step <> 'done';

CREATE TABLE idempotency_keys (
    user_id     TEXT        NOT NULL,
    idem_key    TEXT        NOT NULL,
    fingerprint TEXT        NOT NULL,
    order_id    UUID        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, idem_key)
);

CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE order_events (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        UUID        NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    step            TEXT        NOT NULL,
    outcome         TEXT        NOT NULL,
    attempt         INTEGER,
    upstream_status INTEGER,
    duration_ms     BIGINT,
    detail          TEXT
);

CREATE INDEX order_events_by_order ON order_events (order_id, id);
