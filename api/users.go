package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/confab-chat/confab/repository"
	"github.com/gin-gonic/gin"
)

// me returns the caller.
func (s *Server) me(c *gin.Context) {
	u, err := s.store.UserByID(c.Request.Context(), userID(c))
	if errors.Is(err, repository.ErrNotFound) {
		err = repository.ErrUnknownUser // the token outlived its user
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, u)
}

// searchUsers finds users by username prefix, to start conversations.
func (s *Server) searchUsers(c *gin.Context) {
	q := strings.ToLower(strings.TrimSpace(c.Query("q")))
	if len(q) > 32 || !isText(q) {
		problem(c, http.StatusBadRequest, CodeInvalidField, "q must be at most 32 characters, without NUL")
		return
	}
	users, err := s.store.SearchUsers(c.Request.Context(), q, 20)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"users": users})
}
