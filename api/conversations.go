package api

import (
	"net/http"
	"strconv"
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
		if !s.allowGroup(c, me, in.MemberIDs) {
			return
		}
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

// allowGroup takes the caller's tokens for a new group with others: one
// group creation and one member addition per other member. It has
// answered the client when it returns false.
func (s *Server) allowGroup(c *gin.Context, me string, others []string) bool {
	n := 0
	seen := map[string]bool{me: true}
	for _, id := range others {
		if !seen[id] {
			seen[id] = true
			n++
		}
	}
	if most := s.cfg.MemberAddsPerMinute; most > 0 && n > most {
		problem(c, http.StatusBadRequest, CodeInvalidField, "a group starts with at most "+strconv.Itoa(most)+" other members; add more later")
		return false
	}
	ok, retry, undo := s.groupRate.takeN(me, 1)
	if !ok {
		tooMany(c, retry)
		return false
	}
	if ok, retry := s.addRate.allowN(me, n); !ok {
		undo() // the group was not created
		tooMany(c, retry)
		return false
	}
	return true
}

// listConversations lists a page of the caller's conversations, most
// recent activity first; next_cursor, passed as ?before=, gives the next.
func (s *Server) listConversations(c *gin.Context) {
	limit := s.cfg.ConversationsPage
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.ConversationsPageMax {
			problem(c, http.StatusBadRequest, CodeInvalidField, "limit must be an integer from 1 to "+strconv.Itoa(s.cfg.ConversationsPageMax))
			return
		}
		limit = n
	}
	convs, next, err := s.store.Conversations(c.Request.Context(), userID(c), c.Query("before"), limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	var cursor *string
	if next != "" {
		cursor = &next
	}
	c.JSON(http.StatusOK, gin.H{"conversations": convs, "has_more": next != "", "next_cursor": cursor})
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
	if ok, retry := s.addRate.allow(userID(c)); !ok {
		tooMany(c, retry)
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
