package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// clientName is sent as the parley-client header and shows in presence.
const clientName = "parley-cli"

// Flow-control windows of 1 MiB, fixed: setting them turns off grpc-go's
// BDP probing, whose pings roughly double the server's CPU per delivery.
const flowWindow = 1 << 20

// globals are the flags every command accepts.
type globals struct {
	addr     string // host:port, or several comma-separated (bench spreads its connections over them)
	next     atomic.Uint64
	token    string
	tls      bool
	tlsCA    string
	insecure bool
	timeout  time.Duration
}

func newGlobals() *globals {
	g := &globals{addr: "127.0.0.1:8080", token: os.Getenv("PARLEY_TOKEN"), timeout: 10 * time.Second}
	if a := os.Getenv("PARLEY_ADDR"); a != "" {
		g.addr = a
	}
	return g
}

// register adds the global flags to fs with their current values as
// defaults, so they may come before or after the command name.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "server address host:port (env PARLEY_ADDR); bench spreads its connections over several, comma-separated (a cluster)")
	fs.Var(secret{&g.token}, "token", "bearer token (env PARLEY_TOKEN; get one with 'parley token' or 'parleyd token')")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS, verifying the server against the system's roots")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "PEM file of CA certificates to verify the server with (implies --tls)")
	fs.BoolVar(&g.insecure, "insecure-skip-verify", g.insecure, "TLS without verifying the server's certificate (implies --tls; testing only)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline for each unary call")
}

// secret is a string flag whose value is never shown (in --help defaults).
type secret struct{ p *string }

func (s secret) String() string { return "" }

func (s secret) Set(v string) error {
	*s.p = v
	return nil
}

func (g *globals) useTLS() bool { return g.tls || g.tlsCA != "" || g.insecure }

// tlsConfig returns the client TLS configuration, or nil for cleartext.
func (g *globals) tlsConfig() (*tls.Config, error) {
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
func (g *globals) dialOptions(extra ...grpc.DialOption) ([]grpc.DialOption, error) {
	tc, err := g.tlsConfig()
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
		grpc.WithUserAgent(clientName),
		// grpc-go's default reconnect backoff grows to 120 s; a chat that
		// lost its server should be back within seconds of its return.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	return append(opts, extra...), nil
}

func (g *globals) dial(extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts, err := g.dialOptions(extra...)
	if err != nil {
		return nil, err
	}
	addr := g.nextAddr()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

// addrs returns the server addresses given with --addr.
func (g *globals) addrs() []string {
	var out []string
	for _, a := range strings.Split(g.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// nextAddr returns the addresses in turn, so connections spread over the
// nodes of a cluster.
func (g *globals) nextAddr() string {
	all := g.addrs()
	if len(all) == 0 {
		return g.addr
	}
	return all[(g.next.Add(1)-1)%uint64(len(all))]
}

// needToken fails with a helpful message when no token was given.
func (g *globals) needToken() error {
	if g.token == "" {
		return usagef("no token: pass --token or set PARLEY_TOKEN (on a --dev server: export PARLEY_TOKEN=$(parley token <user>))")
	}
	return nil
}

// withAuth returns ctx carrying the bearer token and the client's name.
func withAuth(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "parley-client", clientName)
}

// unaryCtx is the context of one unary call: authenticated, with the timeout.
func (g *globals) unaryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	return withAuth(ctx, g.token), cancel
}

// errFlagParse marks a flag error the flag package has already printed.
var errFlagParse = errors.New("bad flags")

// parseFlags parses args with fs, allowing flags between positional
// arguments ("send lobby --json hi"); "--" ends the flags. It returns the
// positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errFlagParse
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first non-flag argument, or just after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet returns a flag set for a subcommand with the global flags
// registered and a usage text of synopsis and description.
func newFlagSet(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	e.g.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: parley %s\n\n%s\n\nFlags:\n", synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// describe turns an error into the line printed for it: a gRPC status shows
// its code and the server's message.
func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}

// codeOf returns the gRPC code of err (Unknown for non-status errors).
func codeOf(err error) codes.Code { return status.Code(err) }
