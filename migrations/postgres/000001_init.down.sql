DROP TABLE IF EXISTS settings;
--bun:split
DROP TABLE IF EXISTS sessions;
--bun:split
DROP TABLE IF EXISTS nodes;
--bun:split
DROP TABLE IF EXISTS events;
--bun:split
DROP TABLE IF EXISTS messages;
--bun:split
DROP TABLE IF EXISTS members;
--bun:split
DROP TABLE IF EXISTS conversations;
--bun:split
DROP TABLE IF EXISTS refresh_tokens;
--bun:split
DROP TABLE IF EXISTS streams;
--bun:split
DROP TABLE IF EXISTS users;
