-- The event log: every durable event is stored once, keyed by its
-- conversation, and a user's stream is derived on read (see
-- docs/ARCHITECTURE.md). An event's position is (xid, id): the id of the
-- transaction that wrote it, then its row id. Readers read only below the
-- oldest transaction of this database still in progress, so positions
-- become visible in order without a counter every writer queues on.
CREATE TABLE log (
    id              bigserial PRIMARY KEY,
    xid             bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    conversation_id text NOT NULL,
    type            text NOT NULL,
    data            text NOT NULL,
    created_at      timestamptz NOT NULL
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
    join_xid        bigint NOT NULL,
    join_id         bigint NOT NULL,
    left_xid        bigint,
    left_id         bigint,
    PRIMARY KEY (user_id, conversation_id, join_xid, join_id)
);

--bun:split

-- Where retention cut the log; a cursor below it gets a reset.
INSERT INTO settings (key, value) VALUES ('log_floor', '0-0') ON CONFLICT (key) DO NOTHING;

--bun:split

-- The per-user streams become the log: each event once, in the order it
-- was first appended, at transaction id 0 (below any live position).
INSERT INTO log (xid, conversation_id, type, data, created_at)
SELECT 0, x.conversation_id, x.type, x.data, x.created_at FROM (
    SELECT DISTINCT ON (e.type, COALESCE(d.data, e.data), e.created_at)
        e.type, COALESCE(d.data, e.data) AS data, e.created_at, e.seq,
        CASE e.type
            WHEN 'message.created' THEN COALESCE(d.data, e.data)::jsonb -> 'message' ->> 'conversation_id'
            WHEN 'conversation.created' THEN COALESCE(d.data, e.data)::jsonb -> 'conversation' ->> 'id'
            ELSE COALESCE(d.data, e.data)::jsonb ->> 'conversation_id'
        END AS conversation_id
    FROM events AS e LEFT JOIN event_data AS d ON d.id = e.data_id
    ORDER BY e.type, COALESCE(d.data, e.data), e.created_at, e.seq
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
