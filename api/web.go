package api

import (
	"io/fs"
	"mime"
	"net/http"
	"path"

	"github.com/gin-gonic/gin"
)

// mountWeb serves the browser client: index.html at / and each other file
// at its name. Files are registered one by one so unknown paths still get
// the problem+json 404.
func (s *Server) mountWeb(r *gin.Engine) {
	if s.web == nil {
		return
	}
	fs.WalkDir(s.web, ".", func(p string, d fs.DirEntry, err error) error { //nolint:errcheck // embedded FS
		if err != nil || d.IsDir() || path.Ext(p) == ".go" {
			return nil
		}
		data, err := fs.ReadFile(s.web, p)
		if err != nil {
			return nil
		}
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		serve := func(c *gin.Context) {
			c.Header("Cache-Control", "no-cache")
			c.Header("X-Content-Type-Options", "nosniff")
			c.Data(http.StatusOK, ctype, data)
		}
		if p == "index.html" {
			r.GET("/", serve)
		}
		r.GET("/"+p, serve)
		return nil
	})
}
