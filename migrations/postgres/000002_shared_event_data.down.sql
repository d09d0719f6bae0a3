-- Put shared data back into every row that points at it before the
-- column goes: no event may lose its data.
UPDATE events SET data = (SELECT d.data FROM event_data AS d WHERE d.id = events.data_id)
WHERE data_id IS NOT NULL;

--bun:split

DROP INDEX IF EXISTS events_data_id_idx;

--bun:split

ALTER TABLE events DROP COLUMN data_id;

--bun:split

DROP TABLE IF EXISTS event_data;
