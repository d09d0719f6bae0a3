-- Back to one stream per user: every log event is copied into the stream
-- of each user whose membership span holds it, numbered 1, 2, 3, ... per
-- user in position order.
CREATE TABLE streams (
    user_id    text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL DEFAULT 0
);

--bun:split

CREATE TABLE events (
    user_id    text NOT NULL,
    seq        bigint NOT NULL,
    type       text NOT NULL,
    data       text NOT NULL,
    created_at timestamptz NOT NULL,
    data_id    text,
    PRIMARY KEY (user_id, seq)
);

--bun:split

CREATE INDEX events_created_at_idx ON events (created_at);

--bun:split

CREATE TABLE event_data (
    id         text PRIMARY KEY,
    data       text NOT NULL,
    created_at timestamptz NOT NULL
);

--bun:split

CREATE INDEX events_data_id_idx ON events (data_id) WHERE data_id IS NOT NULL;

--bun:split

INSERT INTO events (user_id, seq, type, data, created_at)
SELECT m.user_id, row_number() OVER (PARTITION BY m.user_id ORDER BY l.xid, l.id), l.type, l.data, l.created_at
FROM memberships AS m
JOIN log AS l ON l.conversation_id = m.conversation_id
    AND (l.xid, l.id) >= (m.join_xid, m.join_id)
    AND (m.left_xid IS NULL OR (l.xid, l.id) <= (m.left_xid, m.left_id));

--bun:split

INSERT INTO streams (user_id, last_seq)
SELECT u.id, COALESCE((SELECT max(e.seq) FROM events AS e WHERE e.user_id = u.id), 0) FROM users AS u;

--bun:split

DELETE FROM settings WHERE key = 'log_floor';

--bun:split

DROP TABLE memberships;

--bun:split

DROP TABLE log;
