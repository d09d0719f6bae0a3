package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// healthz answers while the process runs.
func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 only when the database answers and the real-time core
// is connected: a load balancer should send no traffic here otherwise.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		problem(c, http.StatusServiceUnavailable, CodeUnavailable, "database unreachable")
		return
	}
	if err := s.broker.Ready(ctx); err != nil {
		problem(c, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}
