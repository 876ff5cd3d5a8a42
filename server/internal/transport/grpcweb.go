package transport

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
)

// wsHandshakeKey marks the context of a grpc-web WebSocket request whose
// header frame has not arrived yet; its value is the timer that ends the
// request if the frame does not come within ReadHeaderTimeout.
type wsHandshakeKey struct{}

// serveWebSocket runs a grpc-web WebSocket request. The wrapper reads the
// header frame with no deadline of its own, and net/http's deadlines end
// with the upgrade, so a client that upgrades and sends nothing would hold
// its connection forever: the request is cancelled unless serveGRPCWeb is
// reached (the frame arrived) within ReadHeaderTimeout.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	timer := time.AfterFunc(s.cfg.ReadHeaderTimeout, cancel)
	defer timer.Stop()
	s.web.ServeHTTP(w, r.WithContext(context.WithValue(ctx, wsHandshakeKey{}, timer)))
}

// serveGRPCWeb is the handler behind the grpc-web wrapper. For a WebSocket
// it runs once the header frame is read: it stops the handshake timer and
// bounds the frame's headers by MaxHeaderBytes, as net/http bounds those of
// every other request.
func (s *Server) serveGRPCWeb(w http.ResponseWriter, r *http.Request) {
	if timer, ok := r.Context().Value(wsHandshakeKey{}).(*time.Timer); ok {
		if !timer.Stop() {
			return // too late: the request is already cancelled
		}
		if n := headerListSize(r.Header); n > s.cfg.MaxHeaderBytes {
			writeGRPCStatus(w, codes.ResourceExhausted, fmt.Sprintf(
				"request headers are %d bytes; the limit is %d (a bearer token needs a few KB)", n, s.cfg.MaxHeaderBytes))
			return
		}
	}
	s.grpc.ServeHTTP(w, r)
}

// gatewayHeadroom is room for the headers the REST gateway's gRPC call
// adds to the ones it forwards (pseudo-headers, content-type, user-agent,
// x-forwarded-*), so a REST request within the limit makes a gRPC call
// within it.
const gatewayHeadroom = 1 << 10

// headerListSize measures h as HTTP/2 does: name, value and 32 bytes per
// field.
func headerListSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

// writeGRPCStatus answers a gRPC call with a status and no messages
// ("trailers only").
func writeGRPCStatus(w http.ResponseWriter, code codes.Code, msg string) {
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Grpc-Status", strconv.Itoa(int(code)))
	w.Header().Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}
