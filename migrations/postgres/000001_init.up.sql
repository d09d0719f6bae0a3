-- Users and their per-user event stream counter.
CREATE TABLE users (
    id            text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL
);

--bun:split

-- One row per user; last_seq is the per-user event sequence. Writers lock
-- these rows (in user id order) in the transaction that appends events, which
-- makes seq values gap-free and visible in order.
CREATE TABLE streams (
    user_id    text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL DEFAULT 0
);

--bun:split

CREATE TABLE refresh_tokens (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   text NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);

--bun:split

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

--bun:split

CREATE TABLE conversations (
    id               text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('direct', 'group')),
    title            text,
    direct_key       text UNIQUE,
    created_at       timestamptz NOT NULL,
    last_seq         bigint NOT NULL DEFAULT 0,
    last_message_id  text,
    last_activity_at timestamptz NOT NULL
);

--bun:split

CREATE TABLE members (
    conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at       timestamptz NOT NULL,
    read_seq        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);

--bun:split

CREATE INDEX members_user_idx ON members (user_id);

--bun:split

CREATE TABLE messages (
    id              text PRIMARY KEY,
    conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id       text NOT NULL REFERENCES users (id),
    seq             bigint NOT NULL,
    body            text NOT NULL,
    client_msg_id   text,
    created_at      timestamptz NOT NULL,
    UNIQUE (conversation_id, seq)
);

--bun:split

CREATE UNIQUE INDEX messages_client_msg_id_idx ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;

--bun:split

-- The per-user durable event stream.
CREATE TABLE events (
    user_id    text NOT NULL,
    seq        bigint NOT NULL,
    type       text NOT NULL,
    data       text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, seq)
);

--bun:split

CREATE INDEX events_created_at_idx ON events (created_at);

--bun:split

-- Nodes heartbeat here; sessions of a node whose heartbeat is stale are dead.
CREATE TABLE nodes (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);

--bun:split

CREATE TABLE sessions (
    id           text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    transport    text NOT NULL,
    node         text NOT NULL,
    user_agent   text NOT NULL,
    connected_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);

--bun:split

CREATE INDEX sessions_user_idx ON sessions (user_id);

--bun:split

CREATE INDEX sessions_node_idx ON sessions (node);

--bun:split

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
