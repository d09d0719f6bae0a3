package repository

import (
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// newID returns a new opaque id. UUIDv7 ids are time-ordered, which keeps
// primary-key inserts local in the index.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// User is an account.
type User struct {
	bun.BaseModel `bun:"table:users"`

	ID           string    `bun:"id,pk"`
	Username     string    `bun:"username"`
	DisplayName  string    `bun:"display_name"`
	PasswordHash string    `bun:"password_hash"`
	CreatedAt    time.Time `bun:"created_at"`
}

type refreshToken struct {
	bun.BaseModel `bun:"table:refresh_tokens"`

	ID        string     `bun:"id,pk"`
	UserID    string     `bun:"user_id"`
	FamilyID  string     `bun:"family_id"`
	TokenHash string     `bun:"token_hash"`
	CreatedAt time.Time  `bun:"created_at"`
	ExpiresAt time.Time  `bun:"expires_at"`
	UsedAt    *time.Time `bun:"used_at"`
	RevokedAt *time.Time `bun:"revoked_at"`
}

// Conversation is a direct (two people) or group conversation.
type Conversation struct {
	bun.BaseModel `bun:"table:conversations"`

	ID             string    `bun:"id,pk"`
	Kind           string    `bun:"kind"`
	Title          *string   `bun:"title"`
	DirectKey      *string   `bun:"direct_key"`
	CreatedAt      time.Time `bun:"created_at"`
	LastSeq        int64     `bun:"last_seq"`
	LastMessageID  *string   `bun:"last_message_id"`
	LastActivityAt time.Time `bun:"last_activity_at"`
	// MemberCount is kept by every join and leave (see PresenceMaxMembers).
	MemberCount int `bun:"member_count"`

	// Filled by queries for one reader, not stored in this table.
	Members     []Member `bun:"-"`
	LastMessage *Message `bun:"-"`
	ReadSeq     int64    `bun:"read_seq,scanonly"`
}

// UnreadCount is the reader's unread messages: the conversation's last
// sequence minus the reader's read marker.
func (c *Conversation) UnreadCount() int64 {
	if n := c.LastSeq - c.ReadSeq; n > 0 {
		return n
	}
	return 0
}

// Member is a user's membership of a conversation.
type Member struct {
	bun.BaseModel `bun:"table:members,alias:m"`

	ConversationID string    `bun:"conversation_id,pk"`
	UserID         string    `bun:"user_id,pk"`
	JoinedAt       time.Time `bun:"joined_at"`
	ReadSeq        int64     `bun:"read_seq"`

	Username    string `bun:"username,scanonly"`
	DisplayName string `bun:"display_name,scanonly"`
}

// Message is one chat message.
type Message struct {
	bun.BaseModel `bun:"table:messages"`

	ID             string    `bun:"id,pk"`
	ConversationID string    `bun:"conversation_id"`
	SenderID       string    `bun:"sender_id"`
	Seq            int64     `bun:"seq"`
	Body           string    `bun:"body"`
	ClientMsgID    *string   `bun:"client_msg_id"`
	CreatedAt      time.Time `bun:"created_at"`
}

type setting struct {
	bun.BaseModel `bun:"table:settings"`

	Key   string `bun:"key,pk"`
	Value string `bun:"value"`
}
