package api

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

const maxMessageChars = 4000

// sendMessage stores a message; the store hands its event to the
// real-time core when it commits.
// A retry with the same client_msg_id answers 200 with the stored message.
func (s *Server) sendMessage(c *gin.Context) {
	var in struct {
		Body        string  `json:"body"`
		ClientMsgID *string `json:"client_msg_id"`
	}
	if !decode(c, &in) {
		return
	}
	if msg := validateBody(in.Body); msg != "" {
		problem(c, http.StatusBadRequest, CodeInvalidField, msg)
		return
	}
	if in.ClientMsgID != nil && (len(*in.ClientMsgID) == 0 || len(*in.ClientMsgID) > 64 || !isText(*in.ClientMsgID)) {
		problem(c, http.StatusBadRequest, CodeInvalidField, "client_msg_id must be 1-64 characters, without NUL")
		return
	}
	msg, created, err := s.store.SendMessage(c.Request.Context(), userID(c), c.Param("id"), in.Body, in.ClientMsgID)
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.broker.StopTyping(msg.SenderID, msg.ConversationID) // a sent message ends typing
	}
	c.JSON(status, msg)
}

func validateBody(body string) string {
	n := utf8.RuneCountInString(body)
	switch {
	case strings.TrimSpace(body) == "":
		return "body must not be empty"
	case n > maxMessageChars:
		return "body must be at most " + strconv.Itoa(maxMessageChars) + " characters"
	case strings.ContainsRune(body, 0):
		return "body must not contain NUL"
	}
	return ""
}

// listMessages pages through history, newest page first, oldest first
// within a page.
func (s *Server) listMessages(c *gin.Context) {
	limit := 50
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			problem(c, http.StatusBadRequest, CodeInvalidField, "limit must be an integer from 1 to 100")
			return
		}
		limit = n
	}
	if !isText(c.Query("before")) {
		problem(c, http.StatusNotFound, CodeNotFound, "no such message")
		return
	}
	msgs, more, err := s.store.Messages(c.Request.Context(), userID(c), c.Param("id"), c.Query("before"), limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"messages": msgs, "has_more": more})
}

// markRead moves the caller's read marker.
func (s *Server) markRead(c *gin.Context) {
	var in struct {
		MessageID string `json:"message_id"`
	}
	if !decode(c, &in) {
		return
	}
	if !requireID(c, "message_id", in.MessageID) {
		return
	}
	err := s.store.MarkRead(c.Request.Context(), userID(c), c.Param("id"), in.MessageID)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
