package transport

import "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

// ndjsonStreams is the gateway's JSON marshaler with one change: a
// server-streaming route (GET /v1/rooms/{room}/events) is served as
// application/x-ndjson, one JSON object per line ({"result":{...}} or
// {"error":{...}}), so clients and proxies know not to wait for one JSON
// document. Unary answers, and a stream refused before its first event,
// stay application/json.
type ndjsonStreams struct{ runtime.Marshaler }

// StreamContentType implements runtime.StreamContentType.
func (ndjsonStreams) StreamContentType(any) string { return "application/x-ndjson" }
