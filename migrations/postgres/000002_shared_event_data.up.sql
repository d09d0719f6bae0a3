-- Event data appended to many streams at once (a conversation created
-- with its whole member list, a long message to a big group) is stored
-- once here; the stream rows point at it through data_id and keep an empty
-- data. A 10,000-member group's conversation.created would otherwise
-- write its member list 10,000 times.
CREATE TABLE event_data (
    id         text PRIMARY KEY,
    data       text NOT NULL,
    created_at timestamptz NOT NULL
);

--bun:split

ALTER TABLE events ADD COLUMN data_id text;

--bun:split

-- Pruning deletes the shared rows no event points at; only the rows that
-- share data are indexed, so ordinary appends pay nothing for it.
CREATE INDEX events_data_id_idx ON events (data_id) WHERE data_id IS NOT NULL;
