package repository

import (
	"encoding/json"
	"time"
)

// The wire shapes of openapi.yaml live beside the models because durable events
// store them: an event row holds exactly the JSON its clients will receive.

type messageJSON struct {
	ID             string    `json:"id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       string    `json:"sender_id"`
	Seq            int64     `json:"seq"`
	Body           string    `json:"body"`
	ClientMsgID    *string   `json:"client_msg_id"`
	CreatedAt      time.Time `json:"created_at"`
}

// MarshalJSON renders a message as openapi.yaml describes it.
func (m Message) MarshalJSON() ([]byte, error) {
	return json.Marshal(messageJSON{
		ID: m.ID, ConversationID: m.ConversationID, SenderID: m.SenderID, Seq: m.Seq,
		Body: m.Body, ClientMsgID: m.ClientMsgID, CreatedAt: m.CreatedAt.UTC(),
	})
}

type memberJSON struct {
	UserID      string    `json:"user_id"`
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	JoinedAt    time.Time `json:"joined_at"`
}

type conversationJSON struct {
	ID          string       `json:"id"`
	Kind        string       `json:"kind"`
	Title       *string      `json:"title"`
	CreatedAt   time.Time    `json:"created_at"`
	Members     []memberJSON `json:"members"`
	LastMessage *Message     `json:"last_message"`
	UnreadCount int64        `json:"unread_count"`
}

// MarshalJSON renders a conversation, as seen by the member it was loaded
// for, as openapi.yaml describes it.
func (c Conversation) MarshalJSON() ([]byte, error) {
	members := make([]memberJSON, len(c.Members))
	for i, m := range c.Members {
		members[i] = memberJSON{UserID: m.UserID, Username: m.Username, DisplayName: m.DisplayName, JoinedAt: m.JoinedAt.UTC()}
	}
	return json.Marshal(conversationJSON{
		ID: c.ID, Kind: c.Kind, Title: c.Title, CreatedAt: c.CreatedAt.UTC(),
		Members: members, LastMessage: c.LastMessage, UnreadCount: c.UnreadCount(),
	})
}

type userJSON struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	CreatedAt   time.Time `json:"created_at"`
}

// MarshalJSON renders a user without its password hash.
func (u User) MarshalJSON() ([]byte, error) {
	return json.Marshal(userJSON{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName, CreatedAt: u.CreatedAt.UTC()})
}

// mustJSON marshals values this package built itself; failure is a bug.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
