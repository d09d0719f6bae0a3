package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// sessions lists the caller's live streams and long-pollers on every node.
func (s *Server) sessions(c *gin.Context) {
	list, err := s.broker.Sessions(c.Request.Context(), userID(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"sessions": list})
}
