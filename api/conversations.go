package api

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/confab-chat/confab/repository"
	"github.com/gin-gonic/gin"
)

// createConversation starts a direct conversation (or returns the existing
// one) or a group.
func (s *Server) createConversation(c *gin.Context) {
	var in struct {
		Kind      string   `json:"kind"`
		MemberIDs []string `json:"member_ids"`
		Title     *string  `json:"title"`
	}
	if !decode(c, &in) {
		return
	}
	for _, id := range in.MemberIDs {
		if !isText(id) {
			problem(c, http.StatusNotFound, CodeNotFound, "no such user")
			return
		}
	}
	if in.Title != nil {
		t := strings.TrimSpace(*in.Title)
		if utf8.RuneCountInString(t) > 200 {
			problem(c, http.StatusBadRequest, CodeInvalidField, "title must be at most 200 characters")
			return
		}
		if strings.ContainsFunc(t, unicode.IsControl) {
			problem(c, http.StatusBadRequest, CodeInvalidField, "title must not contain control characters")
			return
		}
		in.Title = &t
		if t == "" {
			in.Title = nil
		}
	}
	me := userID(c)
	switch in.Kind {
	case repository.KindDirect:
		if len(in.MemberIDs) != 1 {
			problem(c, http.StatusBadRequest, CodeInvalidField, "a direct conversation takes exactly one member_id: the other user")
			return
		}
		conv, created, err := s.store.CreateDirect(c.Request.Context(), me, in.MemberIDs[0])
		if err != nil {
			s.fail(c, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		c.JSON(status, conv)
	case repository.KindGroup:
		conv, err := s.store.CreateGroup(c.Request.Context(), me, in.MemberIDs, in.Title, s.cfg.MaxGroupMembers)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.JSON(http.StatusCreated, conv)
	default:
		problem(c, http.StatusBadRequest, CodeInvalidField, `kind must be "direct" or "group"`)
	}
}

// listConversations lists the caller's conversations, most recent first.
func (s *Server) listConversations(c *gin.Context) {
	convs, err := s.store.Conversations(c.Request.Context(), userID(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"conversations": convs})
}

// getConversation returns one conversation of the caller.
func (s *Server) getConversation(c *gin.Context) {
	conv, err := s.store.Conversation(c.Request.Context(), userID(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, conv)
}

// addMember adds a user to a group the caller belongs to.
func (s *Server) addMember(c *gin.Context) {
	var in struct {
		UserID string `json:"user_id"`
	}
	if !decode(c, &in) {
		return
	}
	if !requireID(c, "user_id", in.UserID) {
		return
	}
	conv, err := s.store.AddMember(c.Request.Context(), userID(c), c.Param("id"), in.UserID, s.cfg.MaxGroupMembers)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, conv)
}

// removeMember removes a member from a group; removing yourself is leaving.
func (s *Server) removeMember(c *gin.Context) {
	err := s.store.RemoveMember(c.Request.Context(), userID(c), c.Param("id"), c.Param("user_id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
