-- The inbox of mb (PostgreSQL): one row per handling of a consumed message
-- that took effect, inserted in the handler's own transaction. Rows older
-- than the broker's redelivery horizon may be deleted (Inbox.Cleanup).
CREATE TABLE IF NOT EXISTS mb_inbox (
    consumer_group text NOT NULL,
    handler text NOT NULL,
    source text NOT NULL,
    message_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, handler, source, message_id)
);

CREATE INDEX IF NOT EXISTS mb_inbox_received_at ON mb_inbox (received_at);
