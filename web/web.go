// Package web holds the browser client, embedded into the binary.
package web

import "embed"

// FS holds index.html, the ES modules, the stylesheet and the icon, served at /.
//
//go:embed index.html *.js *.css *.svg
var FS embed.FS
