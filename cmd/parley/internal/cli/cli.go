// Package cli holds what every parley subcommand shares: the global flags
// and the connections they describe, flag parsing, and the errors that set
// the exit status. The chat client (package main) and the load generator
// (package load) both build on it.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// ClientName is sent as the parley-client header and shows in presence.
const ClientName = "parley-cli"

// Flow-control windows of 1 MiB, fixed: setting them turns off grpc-go's
// BDP probing, whose pings roughly double the server's CPU per delivery.
const flowWindow = 1 << 20

// Env is what a command reads and writes: the global flags and the
// process's standard streams.
type Env struct {
	Globals *Globals
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Globals are the flags every command accepts.
type Globals struct {
	Addr     string // host:port, or several comma-separated (bench spreads its connections over them)
	Token    string
	Timeout  time.Duration // deadline of each unary call
	tls      bool
	tlsCA    string
	insecure bool
	next     atomic.Uint64
}

// NewGlobals returns the globals' defaults: the token from PARLEY_TOKEN,
// the address from PARLEY_ADDR or 127.0.0.1:8080.
func NewGlobals() *Globals {
	g := &Globals{Addr: "127.0.0.1:8080", Token: os.Getenv("PARLEY_TOKEN"), Timeout: 10 * time.Second}
	if a := os.Getenv("PARLEY_ADDR"); a != "" {
		g.Addr = a
	}
	return g
}

// Register adds the global flags to fs with their current values as
// defaults, so they may come before or after the command name.
func (g *Globals) Register(fs *flag.FlagSet) {
	fs.StringVar(&g.Addr, "addr", g.Addr, "server address host:port (env PARLEY_ADDR); bench spreads its connections over several, comma-separated (a cluster)")
	fs.Var(secret{&g.Token}, "token", "bearer token (env PARLEY_TOKEN; get one with 'parley token' or 'parleyd token')")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS, verifying the server against the system's roots")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "PEM file of CA certificates to verify the server with (implies --tls)")
	fs.BoolVar(&g.insecure, "insecure-skip-verify", g.insecure, "TLS without verifying the server's certificate (implies --tls; testing only)")
	fs.DurationVar(&g.Timeout, "timeout", g.Timeout, "deadline for each unary call")
}

// secret is a string flag whose value is never shown (in --help defaults).
type secret struct{ p *string }

func (s secret) String() string { return "" }

func (s secret) Set(v string) error {
	*s.p = v
	return nil
}

func (g *Globals) useTLS() bool { return g.tls || g.tlsCA != "" || g.insecure }

// TLSConfig returns the client TLS configuration, or nil for cleartext.
func (g *Globals) TLSConfig() (*tls.Config, error) {
	if !g.useTLS() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: g.insecure} //nolint:gosec // opt-in flag
	if g.tlsCA != "" {
		pem, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls-ca %s: no PEM certificates found", g.tlsCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// dialOptions are the options of every connection the client opens.
func (g *Globals) dialOptions(extra ...grpc.DialOption) ([]grpc.DialOption, error) {
	tc, err := g.TLSConfig()
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		grpc.WithUserAgent(ClientName),
		// grpc-go's default reconnect backoff grows to 120 s; a chat that
		// lost its server should be back within seconds of its return.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	return append(opts, extra...), nil
}

// Dial returns a client connection to the next address of --addr, with
// the client's options followed by extra.
func (g *Globals) Dial(extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts, err := g.dialOptions(extra...)
	if err != nil {
		return nil, err
	}
	addr := g.NextAddr()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

// Addrs returns the server addresses given with --addr.
func (g *Globals) Addrs() []string {
	var out []string
	for _, a := range strings.Split(g.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// NextAddr returns the addresses in turn, so connections spread over the
// nodes of a cluster.
func (g *Globals) NextAddr() string {
	all := g.Addrs()
	if len(all) == 0 {
		return g.Addr
	}
	return all[(g.next.Add(1)-1)%uint64(len(all))]
}

// NeedToken fails with a helpful message when no token was given.
func (g *Globals) NeedToken() error {
	if g.Token == "" {
		return Usagef("no token: pass --token or set PARLEY_TOKEN (on a --dev server: export PARLEY_TOKEN=$(parley token <user>))")
	}
	return nil
}

// WithAuth returns ctx carrying the bearer token and the client's name.
func WithAuth(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "parley-client", ClientName)
}

// UnaryCtx is the context of one unary call: authenticated, with the timeout.
func (g *Globals) UnaryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, g.Timeout)
	return WithAuth(ctx, g.Token), cancel
}
