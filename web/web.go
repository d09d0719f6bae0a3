// Package web holds the browser client, embedded into the binary and served
// at / with no build step.
package web

import "embed"

// FS holds the client's files (index.html, its scripts and styles).
//
//go:embed *
var FS embed.FS
