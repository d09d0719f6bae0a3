-- How many members a conversation has, kept by every join and leave:
-- presence is shared only through conversations up to a size (see
-- repository.Options.PresenceMaxMembers), and counting the members of a
-- 10,000-member group on every stream open would cost more than the
-- presence itself.
ALTER TABLE conversations ADD COLUMN member_count integer NOT NULL DEFAULT 0;

--bun:split

UPDATE conversations SET member_count = (SELECT count(*) FROM members AS m WHERE m.conversation_id = conversations.id);
