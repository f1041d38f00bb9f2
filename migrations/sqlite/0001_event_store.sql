-- The event store: one row per event, bytes exactly as signed.
-- position: the global order (1, 2, ...), assigned by the single writer in commit order.
-- body: NULL once erased; the row's other columns never change.
CREATE TABLE events (
    position   INTEGER PRIMARY KEY,
    id         BLOB    NOT NULL UNIQUE,
    stream     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    core       BLOB    NOT NULL,
    body       BLOB,
    signatures BLOB    NOT NULL,
    UNIQUE (stream, seq)
);
