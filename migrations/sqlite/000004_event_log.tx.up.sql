-- The event log: every durable event is stored once, keyed by its
-- conversation, and a user's stream is derived on read (see
-- docs/ARCHITECTURE.md). An event's position is (xid, id); SQLite has one
-- writer at a time, so row ids are already in commit order and xid is
-- always 0. AUTOINCREMENT: an id is never reused, even after pruning.
CREATE TABLE log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    xid             integer NOT NULL DEFAULT 0,
    conversation_id text NOT NULL,
    type            text NOT NULL,
    data            text NOT NULL,
    created_at      timestamp NOT NULL
);

--bun:split

CREATE INDEX log_position_idx ON log (xid, id);

--bun:split

CREATE INDEX log_conversation_idx ON log (conversation_id, xid, id);

--bun:split

-- Who was a member of which conversation between which two positions:
-- from the event that added them (conversation.created or member.joined)
-- to the member.left that removed them, both included. A user's stream is
-- the log filtered through these spans.
CREATE TABLE memberships (
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id text NOT NULL,
    join_xid        integer NOT NULL,
    join_id         integer NOT NULL,
    left_xid        integer,
    left_id         integer,
    PRIMARY KEY (user_id, conversation_id, join_xid, join_id)
);

--bun:split

-- Where retention cut the log; a cursor below it gets a reset.
INSERT INTO settings (key, value) VALUES ('log_floor', '0-0') ON CONFLICT (key) DO NOTHING;

--bun:split

-- The per-user streams become the log: each event once, in the order it
-- was first appended.
INSERT INTO log (xid, conversation_id, type, data, created_at)
SELECT 0, x.conversation_id, x.type, x.data, x.created_at FROM (
    SELECT e.type, COALESCE(d.data, e.data) AS data, e.created_at, min(e.seq) AS seq,
        CASE e.type
            WHEN 'message.created' THEN json_extract(COALESCE(d.data, e.data), '$.message.conversation_id')
            WHEN 'conversation.created' THEN json_extract(COALESCE(d.data, e.data), '$.conversation.id')
            ELSE json_extract(COALESCE(d.data, e.data), '$.conversation_id')
        END AS conversation_id
    FROM events AS e LEFT JOIN event_data AS d ON d.id = e.data_id
    GROUP BY e.type, COALESCE(d.data, e.data), e.created_at
) AS x
WHERE x.conversation_id IS NOT NULL
ORDER BY x.created_at, x.seq;

--bun:split

-- Current members joined at the first migrated event of theirs.
INSERT INTO memberships (user_id, conversation_id, join_xid, join_id)
SELECT m.user_id, m.conversation_id, 0, COALESCE(
    (SELECT min(l.id) FROM log AS l WHERE l.conversation_id = m.conversation_id AND l.created_at >= m.joined_at), 0)
FROM members AS m;

--bun:split

DROP TABLE events;

--bun:split

DROP TABLE event_data;

--bun:split

DROP TABLE streams;
