package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/gin-gonic/gin"
)

// clientCSP lets the browser client load its own files and talk to its own
// origin, and nothing else: no inline script or style (so an injected
// message cannot run), no plugins, no <base> rewriting, no framing
// (clickjacking).
const clientCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"

// mountWeb serves the browser client: index.html at / and each other file
// at its name. Files are registered one by one so unknown paths still get
// the problem+json 404. http.ServeContent answers HEAD, If-None-Match and
// Range from the content's hash.
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
		sum := sha256.Sum256(data)
		etag := `"` + hex.EncodeToString(sum[:16]) + `"`
		serve := func(c *gin.Context) {
			h := c.Writer.Header()
			h.Set("Content-Type", ctype)
			h.Set("ETag", etag)
			h.Set("Cache-Control", "no-cache") // revalidate: a new build must not mix with old files
			h.Set("Content-Security-Policy", clientCSP)
			h.Set("X-Frame-Options", "DENY") // frame-ancestors for older browsers
			http.ServeContent(c.Writer, c.Request, p, time.Time{}, bytes.NewReader(data))
		}
		routes := []string{"/" + p}
		if p == "index.html" {
			routes = append(routes, "/")
		}
		for _, route := range routes {
			r.GET(route, serve)
			r.HEAD(route, serve)
		}
		return nil
	})
}
