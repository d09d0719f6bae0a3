// Package confab holds the HTTP contract of the confab chat backend: the
// OpenAPI 3.1 document that describes every endpoint, which the server serves
// at /openapi.yaml and its tests validate real requests and responses against.
package confab

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document (openapi.yaml), the authoritative
// description of the HTTP API.
//
//go:embed openapi.yaml
var OpenAPI []byte
