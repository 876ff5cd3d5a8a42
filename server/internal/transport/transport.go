// Package transport puts Parley's one API on the wire: native gRPC through
// grpc-go's own HTTP/2 transport, grpc-web (with its WebSocket transport for
// the bidirectional stream), the REST gateway, the web UI and /healthz, all
// on one cleartext port split by the HTTP/2 client preface. With TLS, the
// port serves everything through net/http, and an optional second port
// serves native gRPC on grpc-go's transport.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/improbable-eng/grpc-web/go/grpcweb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/test/bufconn"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Config says where and how to listen. Zero values mean the defaults.
type Config struct {
	// Listen is the main address (default DefaultListen).
	Listen string
	// GRPCListen, if set, is a second address serving native gRPC only.
	GRPCListen string
	// TLS, if set, makes the main listener (and GRPCListen) serve TLS.
	TLS *tls.Config
	// AllowedOrigins may call grpc-web and open its WebSocket from other
	// origins; by default only the server's own origin may.
	AllowedOrigins []string
	// MaxMessageBytes bounds a received gRPC message and a grpc-web
	// WebSocket frame (default DefaultMaxMessageBytes).
	MaxMessageBytes int
	// MaxStreamsPerConn bounds concurrent streams on one HTTP/2
	// connection, native gRPC's and net/http's (grpc-web and REST over TLS)
	// (default DefaultMaxStreamsPerConn).
	MaxStreamsPerConn uint32
	// MaxRequestBodyBytes bounds a REST request body (default 64 KiB).
	MaxRequestBodyBytes int64
	// MaxHeaderBytes bounds a request's headers on every front door
	// (default DefaultMaxHeaderBytes; a bearer token needs a few KB):
	// native gRPC's header list (grpc.MaxHeaderListSize, announced in the
	// HTTP/2 settings), the HTTP server's HTTP/1.1 and HTTP/2 requests
	// (431), and the header frame that opens a grpc-web WebSocket.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers or HTTP/2 preface, to finish grpc-go's HTTP/2
	// handshake, and to send a grpc-web WebSocket's header frame (default
	// DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it (native gRPC and HTTP/2 through net/http; default
	// DefaultKeepaliveTime); KeepaliveTimeout is how long the server then
	// waits for any frame before closing it (default
	// DefaultKeepaliveTimeout). A dead or frozen peer is thus dropped
	// within KeepaliveTime+KeepaliveTimeout of its last frame. The
	// same sum bounds an idle HTTP/1.1 keep-alive connection, and TCP
	// keepalive probes on the same schedule find vanished hosts on every
	// connection (HTTP/1.1 streams and WebSockets have no ping).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// Healthy reports whether /healthz should answer 200.
	Healthy func() bool
	// HealthDetail, if set, says what is wrong or degraded ("" if nothing);
	// /healthz writes it in its body, after "not serving: " when unhealthy.
	HealthDetail func() string
	// UI serves everything that is not an API route, such as the web app.
	UI http.Handler
	// Metrics, if set, serves /metrics.
	Metrics http.Handler
	// Conns, if set, counts the connections native gRPC is served on
	// (grpc-go's own transport: the main listener's HTTP/2 cleartext
	// connections and GRPCListen's).
	Conns *OpenConns
	Log   *slog.Logger
}

// Defaults of the Config fields that parleyd shows in its flags.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultMaxMessageBytes   = 64 << 10
	DefaultMaxStreamsPerConn = 100
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultKeepaliveTime     = 20 * time.Second
	DefaultKeepaliveTimeout  = 10 * time.Second
)

// keepaliveMinTime is how often a client may ping the server; grpc-go
// clients cannot ping more often than every 10s anyway.
const keepaliveMinTime = 10 * time.Second

// The server's receive windows, fixed. grpc-go's default is a dynamic
// window sized by BDP probing: the first DATA frame after each probe's
// answer makes the server write a WINDOW_UPDATE and a PING and then read
// the client's PING ACK. A chat client sends a trickle of small frames (a
// send, a mark, a typing notice), so nearly every frame it sends cost the
// server a write and a read more, and the client an answer; fixed windows
// take that out (docs/performance.md, "Fixed receive windows"). They also
// bound what a client may have in flight to the server below what probing
// may grow to (16 MiB): 64 KiB a stream, grpc-go's initial window (a
// longer message still passes: grpc-go widens a stream's window for the
// message it is reading), and 1 MiB a connection, so that the streams of
// a gateway's connection need not take turns.
const (
	streamWindow = 64 << 10
	connWindow   = 1 << 20
)

// GRPCServerOptions returns the grpc.Server options that put cfg's message,
// stream and header limits, handshake timeout, keepalive and fixed receive
// windows on grpc-go's own transport.
func GRPCServerOptions(cfg Config) []grpc.ServerOption {
	cfg.setDefaults()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		grpc.MaxConcurrentStreams(cfg.MaxStreamsPerConn),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderBytes)),
		// The HTTP/2 preface and settings are due within ReadHeaderTimeout
		// (grpc-go's default is 120s).
		grpc.ConnectionTimeout(cfg.ReadHeaderTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
	}
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxStreamsPerConn == 0 {
		c.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if c.MaxRequestBodyBytes <= 0 {
		c.MaxRequestBodyBytes = 64 << 10
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.KeepaliveTime <= 0 {
		c.KeepaliveTime = DefaultKeepaliveTime
	}
	if c.KeepaliveTimeout <= 0 {
		c.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if c.Healthy == nil {
		c.Healthy = func() bool { return true }
	}
	if c.UI == nil {
		c.UI = http.NotFoundHandler()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Server is the set of listeners in front of one grpc.Server.
type Server struct {
	cfg      Config
	grpc     *grpc.Server
	web      *grpcweb.WrappedGrpcServer
	gateway  *runtime.ServeMux
	http     *http.Server
	internal *bufconn.Listener
	gwConn   *grpc.ClientConn
	ln       net.Listener
	grpcLn   net.Listener
	wg       sync.WaitGroup
	errs     chan error
}

// Listen binds the configured addresses and prepares every front door for
// gs, whose services must already be registered.
func Listen(ctx context.Context, cfg Config, gs *grpc.Server) (*Server, error) {
	cfg.setDefaults()
	routeGRPCLog(cfg.Log)
	s := &Server{cfg: cfg, grpc: gs, errs: make(chan error, 4)}
	s.web = grpcweb.WrapHandler(http.HandlerFunc(s.serveGRPCWeb),
		grpcweb.WithEndpointsFunc(func() []string { return grpcweb.ListGRPCResources(gs) }),
		grpcweb.WithWebsockets(true),
		grpcweb.WithWebsocketsMessageReadLimit(int64(cfg.MaxMessageBytes)),
		grpcweb.WithOriginFunc(s.allowedOrigin),
		grpcweb.WithWebsocketOriginFunc(s.allowedWebsocketOrigin),
	)
	if err := s.startGateway(ctx); err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.KeepaliveTime + cfg.KeepaliveTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: int(cfg.MaxStreamsPerConn),
			SendPingTimeout: cfg.KeepaliveTime, PingTimeout: cfg.KeepaliveTimeout},
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	var err error
	if s.ln, err = listenTCP(ctx, cfg.Listen, cfg); err != nil {
		s.gwConn.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if cfg.GRPCListen != "" {
		if s.grpcLn, err = listenTCP(ctx, cfg.GRPCListen, cfg); err != nil {
			s.ln.Close()
			s.gwConn.Close()
			return nil, fmt.Errorf("listen on %s: %w", cfg.GRPCListen, err)
		}
	}
	return s, nil
}

// listenTCP listens on addr. Accepted connections get TCP keepalive probes
// after KeepaliveTime of silence, giving up KeepaliveTimeout later: the
// kernel then notices a vanished host (not a frozen process, whose kernel
// still answers) on any connection, including HTTP/1.1 streams and
// WebSockets, which have no HTTP/2 ping.
func listenTCP(ctx context.Context, addr string, cfg Config) (net.Listener, error) {
	const probes = 3
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true,
		Idle: cfg.KeepaliveTime, Interval: max(cfg.KeepaliveTimeout/probes, time.Second), Count: probes}}
	return lc.Listen(ctx, "tcp", addr)
}

// startGateway registers the REST gateway against an in-memory connection
// to the gRPC server itself, so REST calls pass through the same
// interceptors (auth) as every other call.
func (s *Server) startGateway(ctx context.Context) error {
	s.internal = bufconn.Listen(1 << 20)
	conn, err := grpc.NewClient("passthrough:///parley-internal",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.internal.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return fmt.Errorf("gateway connection: %w", err)
	}
	s.gwConn = conn
	s.gateway = newGateway(
		runtime.WithIncomingHeaderMatcher(gatewayIncomingHeader),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
	)
	if err := parleyv1.RegisterChatServiceHandler(ctx, s.gateway, conn); err != nil {
		conn.Close()
		return fmt.Errorf("register gateway: %w", err)
	}
	return nil
}

// gatewayIncomingHeader forwards only the headers the API reads, besides
// Authorization, which the gateway always passes on, one metadata value per
// header (forwarding it here too would double it). Client supplied
// Grpc-Metadata-* headers are never passed on.
func gatewayIncomingHeader(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "parley-client":
		return "parley-client", true
	}
	return "", false
}

// Addr returns the main listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// GRPCAddr returns the native gRPC listener's address, or nil.
func (s *Server) GRPCAddr() net.Addr {
	if s.grpcLn == nil {
		return nil
	}
	return s.grpcLn.Addr()
}

// Serve starts serving on every listener and returns at once. Errors from
// the listeners arrive on Errors.
func (s *Server) Serve() {
	s.goServe(func() error { return s.grpc.Serve(s.internal) })
	if s.grpcLn != nil {
		ln := s.grpcLn
		if s.cfg.TLS != nil {
			tc := s.cfg.TLS.Clone()
			tc.NextProtos = []string{"h2"}
			ln = tls.NewListener(ln, tc)
		}
		s.goServe(func() error { return s.grpc.Serve(s.counted(ln)) })
	}
	if s.cfg.TLS != nil {
		s.http.TLSConfig = s.cfg.TLS.Clone()
		tlsLn := tls.NewListener(s.ln, s.http.TLSConfig)
		s.goServe(func() error { return s.http.Serve(tlsLn) })
		return
	}
	split := newSplitListener(s.ln, s.cfg.ReadHeaderTimeout, s.cfg.Log)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); split.run() }()
	s.goServe(func() error { return s.grpc.Serve(s.counted(split.grpc)) })
	s.goServe(func() error { return s.http.Serve(split.http) })
}

// counted returns ln, noting its connections in Config.Conns if set.
func (s *Server) counted(ln net.Listener) net.Listener {
	if s.cfg.Conns == nil {
		return ln
	}
	return countingListener{Listener: ln, conns: s.cfg.Conns}
}

func (s *Server) goServe(serve func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
			s.errs <- err
		}
	}()
}

// Errors delivers a listener's failure.
func (s *Server) Errors() <-chan error { return s.errs }

// Shutdown stops accepting, lets in-flight calls finish and closes every
// connection, giving up on stragglers when ctx ends. Open streams must be
// ended by their services first, or GracefulStop waits for them.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	herr := s.http.Shutdown(ctx)
	if herr != nil {
		s.http.Close()
	}
	s.ln.Close()
	s.gwConn.Close()
	s.wg.Wait()
	if herr != nil {
		return fmt.Errorf("http shutdown: %w", herr)
	}
	return nil
}

// ServeHTTP routes HTTP requests: grpc-web to the wrapper, gRPC over
// HTTP/2 (TLS only) to the gRPC server, /v1/ to the REST gateway, the rest
// to the UI.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.web.IsGrpcWebSocketRequest(r):
		s.serveWebSocket(w, r)
	case s.web.IsGrpcWebRequest(r) || s.web.IsAcceptableGrpcCorsRequest(r):
		s.web.ServeHTTP(w, r)
	case r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc"):
		s.grpc.ServeHTTP(w, r)
	case r.URL.Path == "/healthz":
		s.healthz(w)
	case r.URL.Path == "/metrics" && s.cfg.Metrics != nil:
		s.cfg.Metrics.ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/"):
		if n := headerListSize(r.Header) + gatewayHeadroom; n > s.cfg.MaxHeaderBytes {
			// net/http's own limit leaves some slack; the gateway's call
			// to the gRPC server, which adds headers of its own, has none.
			http.Error(w, fmt.Sprintf("request headers are %d bytes; the limit is %d", n-gatewayHeadroom, s.cfg.MaxHeaderBytes-gatewayHeadroom), http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBodyBytes)
		s.gateway.ServeHTTP(w, r)
	default:
		s.cfg.UI.ServeHTTP(w, r)
	}
}

func (s *Server) healthz(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var detail string
	if s.cfg.HealthDetail != nil {
		detail = s.cfg.HealthDetail()
	}
	switch {
	case !s.cfg.Healthy() && detail != "":
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not serving:", detail)
	case !s.cfg.Healthy():
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not serving")
	case detail != "":
		fmt.Fprintln(w, detail)
	default:
		fmt.Fprintln(w, "ok")
	}
}

func (s *Server) allowedOrigin(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	return false
}

// allowedWebsocketOrigin admits a WebSocket from the server's own origin or
// an allowed one. Browsers always send Origin on WebSocket handshakes.
func (s *Server) allowedWebsocketOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: no cross-site risk
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return s.allowedOrigin(origin)
}
