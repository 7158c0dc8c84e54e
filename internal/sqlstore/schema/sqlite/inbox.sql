-- The inbox of mb (SQLite): one row per handling of a consumed message
-- that took effect, inserted in the handler's own transaction.
-- received_at is in microseconds since 1970-01-01 UTC. Rows older than
-- the broker's redelivery horizon may be deleted (Inbox.Cleanup).
CREATE TABLE IF NOT EXISTS mb_inbox (
    consumer_group TEXT NOT NULL,
    handler TEXT NOT NULL,
    source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, handler, source, message_id)
);

CREATE INDEX IF NOT EXISTS mb_inbox_received_at ON mb_inbox (received_at);
