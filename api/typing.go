package api

import (
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"
)

// typing serves POST /v1/conversations/:id/typing: a ping that the caller
// is typing (clients repeat it while typing; it expires on its own) or has
// stopped. Pings are rate limited per user and conversation.
func (s *Server) typing(c *gin.Context) {
	var in struct {
		Typing *bool `json:"typing"`
	}
	if !decode(c, &in) {
		return
	}
	if in.Typing == nil {
		problem(c, http.StatusBadRequest, CodeInvalidField, "typing (true or false) is required")
		return
	}
	uid, convID := userID(c), c.Param("id")
	members, err := s.store.MemberIDs(c.Request.Context(), convID)
	if err != nil {
		s.fail(c, err)
		return
	}
	if !slices.Contains(members, uid) {
		problem(c, http.StatusNotFound, CodeNotFound, "")
		return
	}
	// A stop is never refused: it only ever shortens an indicator.
	if *in.Typing {
		if ok, retry := s.typingRate.allow(uid + "|" + convID); !ok {
			tooMany(c, retry)
			return
		}
	}
	s.broker.SetTyping(uid, convID, *in.Typing, members)
	c.Status(http.StatusNoContent)
}
