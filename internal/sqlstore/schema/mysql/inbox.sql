-- The inbox of mb (MariaDB and MySQL): one row per handling of a consumed
-- message that took effect, inserted in the handler's own transaction.
-- The key is key_hash, the SHA-256 of the four key columns (computed by
-- mbsql): an index over the columns themselves would exceed InnoDB's
-- 3072-byte key limit, and the columns are compared byte for byte
-- whatever the server's default collation. Rows older than the broker's
-- redelivery horizon may be deleted (Inbox.Cleanup).
CREATE TABLE IF NOT EXISTS mb_inbox (
    key_hash BINARY(32) NOT NULL,
    consumer_group TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    handler TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    source TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    message_id TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    received_at DATETIME(6) NOT NULL,
    PRIMARY KEY (key_hash),
    KEY mb_inbox_received_at (received_at)
) ENGINE = InnoDB;
