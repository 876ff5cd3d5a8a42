// Package parley holds what the server embeds from the repository's root:
// the OpenAPI document that `go tool buf generate` writes into gen/openapi.
// It lives here because go:embed cannot reach a parent directory and gen/
// holds only generated files.
package parley

import _ "embed" // for go:embed

// OpenAPI is the REST gateway's OpenAPI 2.0 (Swagger) document, served at
// /openapi.json.
//
//go:embed gen/openapi/parley.swagger.json
var OpenAPI []byte
