-- The event store: one row per event, bytes exactly as signed.
-- position: the global order, assigned while holding the store_head row lock, so
-- positions become visible in order (see docs/ARCHITECTURE.md, "PostgreSQL order").
-- body: NULL once erased; the row's other columns never change.
CREATE TABLE events (
    position   BIGINT PRIMARY KEY,
    id         BYTEA  NOT NULL UNIQUE,
    stream     TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    core       BYTEA  NOT NULL,
    body       BYTEA,
    signatures BYTEA  NOT NULL,
    UNIQUE (stream, seq)
);

-- One row: the last position handed out. Writers lock it for the whole transaction.
CREATE TABLE store_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position  BIGINT NOT NULL
);
INSERT INTO store_head (position) VALUES (0);
