package transport

import _ "embed" // for go:embed

// OpenAPI is the REST gateway's OpenAPI 2.0 (Swagger) document, served at
// /openapi.json. `go tool buf generate` writes it into openapi/ beside this
// file (a directory of generated files only, checked for drift like gen/),
// because go:embed cannot reach gen/ from here.
//
//go:embed openapi/parley.swagger.json
var OpenAPI []byte
