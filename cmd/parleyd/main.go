// Command parleyd is the Parley chat server.
//
//	parleyd [flags]                 serve (see --help)
//	parleyd token [flags] <user>    print a token signed with the server's key
//
// Every flag can also be set with a PARLEY_* environment variable: --data-dir
// is PARLEY_DATA_DIR. A flag on the command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parleychat/parley/server/app"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "parleyd:", err)
			os.Exit(1)
		}
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], stdout, stderr)
	}
	return runServe(args, stderr)
}

func runServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg app.Config
	var origins, logFormat, logLevel string
	fs.StringVar(&cfg.Listen, "listen", app.DefaultListen, "address for gRPC, grpc-web, REST and the web UI, all on one port")
	fs.StringVar(&cfg.GRPCListen, "grpc-listen", "", "with TLS: an extra address serving native gRPC on grpc-go's own transport")
	fs.StringVar(&cfg.DataDir, "data-dir", app.DefaultDataDir, "directory for the token signing key and the database (created if missing)")
	fs.StringVar(&cfg.Store, "store", app.DefaultStore, "where history lives: sqlite (in --data-dir), memory (lost on exit), or a postgres://user@host/db URL shared by a cluster's nodes")
	fs.StringVar(&cfg.Broker, "broker", "", "nats://host:4222 (comma-separated for several): join a cluster of nodes sharing a postgres:// --store")
	fs.StringVar(&cfg.BrokerSubject, "broker-subject", app.DefaultBrokerSubject, "prefix of the cluster's NATS subjects; separate clusters on one NATS need different ones")
	fs.StringVar(&cfg.NodeID, "node-id", "", "this node's name in the cluster (default: host name and a random suffix)")
	fs.DurationVar(&cfg.NodeTimeout, "node-timeout", app.DefaultNodeTimeout, "how long a silent node's users stay in presence before their leaves are announced (checked every 0.5 s, with the heartbeats)")
	fs.StringVar(&cfg.PostgresSchema, "postgres-schema", app.DefaultPostgresSchema, "with a postgres:// store: the schema holding Parley's tables")
	fs.IntVar(&cfg.SQLite.MaxBatch, "sqlite-max-batch", 0, fmt.Sprintf("most sends committed in one SQLite transaction (0: the default, %d; 1 turns group commit off)", app.DefaultSQLiteMaxBatch))
	fs.DurationVar(&cfg.SQLite.MaxBatchDelay, "sqlite-batch-delay", 0, fmt.Sprintf("how long a batch may wait for more sends while more are coming (0: the default, %v)", app.DefaultSQLiteMaxBatchDelay))
	fs.Int64Var(&cfg.SQLite.MaxBytes, "sqlite-max-bytes", 0, "largest the SQLite database may grow; past it sends fail as on a full disk, leaving the disk's rest free (0: no limit)")
	fs.DurationVar(&cfg.DBCheckTimeout, "db-check-timeout", app.DefaultDBCheckTimeout, "how long the check of the SQLite database at start may take before the rest goes unchecked (negative: no check)")
	fs.BoolVar(&cfg.Dev, "dev", false, "development mode: DevLogin hands out a token for any user name; refuses non-loopback --listen")
	fs.BoolVar(&cfg.DevAllowRemote, "dev-allow-remote", false, "let --dev listen on a non-loopback address (anyone who reaches it can be anyone)")
	tokenFlags(fs, &cfg.Tokens)
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate file; serve TLS (with --tls-key)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated origins (https://app.example) allowed to call grpc-web from other sites; default: same origin only")
	fs.IntVar(&cfg.MaxBodyBytes, "max-body-bytes", app.DefaultMaxBodyBytes, "largest message body in bytes")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", app.DefaultMaxMessageBytes, "largest gRPC message or grpc-web WebSocket frame a client may send")
	fs.IntVar(&cfg.MaxQueueBytes, "max-queue-bytes", app.DefaultMaxQueueBytes, "bytes queued for one stream before it is cut off as too slow (RESOURCE_EXHAUSTED)")
	fs.IntVar(&cfg.MaxRoomsPerConn, "max-rooms-per-stream", app.DefaultMaxRoomsPerConn, "rooms one Join or Subscribe stream may be in")
	maxStreams := fs.Uint("max-streams-per-conn", app.DefaultMaxStreamsPerConn, "concurrent streams on one HTTP/2 connection (the HTTP/2 rapid-reset mitigation relies on it)")
	fs.Float64Var(&cfg.SendRate, "send-rate", app.DefaultSendRate, "messages per second one user may send across all streams and REST; negative for no limit (load tests)")
	fs.IntVar(&cfg.SendBurst, "send-burst", 0, "burst of sends allowed above --send-rate (default 2×send-rate)")
	fs.Float64Var(&cfg.RoomCreateRate, "room-create-rate", app.DefaultRoomCreateRate, "rooms per second one user may create (CreateRoom, where a public room is announced to every connection, and direct rooms started by a first message); negative for no limit")
	fs.IntVar(&cfg.RoomCreateBurst, "room-create-burst", app.DefaultRoomCreateBurst, "rooms one user may create at once above --room-create-rate")
	fs.IntVar(&cfg.MaxJoinStreamsPerUser, "max-join-streams-per-user", app.DefaultMaxJoinStreamsPerUser, "Join and Subscribe streams one user may have open at once")
	fs.DurationVar(&cfg.ReadMarkerFlush, "read-marker-flush", app.DefaultReadMarkerFlush, "how often read markers are stored, all in one batch; those marked since the last flush are lost if parleyd dies")
	fs.DurationVar(&cfg.ReceiptInterval, "receipt-interval", app.DefaultReceiptInterval, "shortest time between two receipts of one reader in one room: receipts are coalesced over it (longer: fewer frames, \"seen by\" lags more)")
	fs.IntVar(&cfg.ReceiptsMaxMembers, "receipts-max-members", app.DefaultReceiptsMaxMembers, "most readers (a private room's members; users who marked a public room read) a room may have for receipts (\"seen by\"); negative: no receipts")
	fs.IntVar(&cfg.PresencePageThreshold, "presence-page-threshold", app.DefaultPresencePageThreshold, "distinct users (or connections) online from which a room is big: joiners get the online count and the first 100 users of its presence and page through the rest, and presence changes are gathered (see --presence-diff-interval)")
	fs.DurationVar(&cfg.PresenceDiffInterval, "presence-diff-interval", app.DefaultPresenceDiffInterval, "in a big room, or one with 100 connections or more, presence changes are gathered this long and announced in one diff")
	fs.StringVar(&cfg.DefaultRoom, "default-room", app.DefaultRoomName, "public room created at start if missing; - for none")
	fs.DurationVar(&cfg.Retention.MaxAge, "retention-max-age", 0, "delete messages older than this (e.g. 720h); 0 keeps them")
	fs.IntVar(&cfg.Retention.MaxMessages, "retention-max-messages", 0, "keep at most this many newest messages per room; 0 keeps all")
	fs.DurationVar(&cfg.RetentionInterval, "retention-interval", app.DefaultRetentionInterval, "how often retention runs")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", app.DefaultMaxHeaderBytes, "largest request header list a client may send, on every front door (a bearer token needs a few KB)")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", app.DefaultReadHeaderTimeout, "how long a client may take to send HTTP request headers, the HTTP/2 handshake or a grpc-web WebSocket's header frame")
	fs.DurationVar(&cfg.KeepaliveTime, "keepalive-time", app.DefaultKeepaliveTime, "ping a connection silent for this long (HTTP/2 connections; at least 1s)")
	fs.DurationVar(&cfg.KeepaliveTimeout, "keepalive-timeout", app.DefaultKeepaliveTimeout, "drop a pinged connection that sends nothing for this long")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "how long graceful shutdown may take before connections are closed")
	pprofAddr := fs.String("pprof-listen", "", "serve Go's net/http/pprof profiles on this address (keep it on loopback)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `parleyd: the Parley chat server.

Usage:
  parleyd [flags]                  serve
  parleyd token [flags] <user>     print a token for <user> signed with the server's key

Each flag can also be set with PARLEY_<FLAG> (for --data-dir: PARLEY_DATA_DIR).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: the server takes only flags (to mint a token: parleyd token <user>)", fs.Arg(0))
	}
	cfg.MaxStreamsPerConn = uint32(*maxStreams)
	cfg.AllowedOrigins = splitList(origins)
	log, err := newLogger(stderr, logFormat, logLevel)
	if err != nil {
		return err
	}
	cfg.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *pprofAddr != "" {
		stopPprof, err := servePprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	err = app.Run(ctx, cfg)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: another program holds that port; choose another address with --listen (or PARLEY_LISTEN)", err)
	}
	return err
}

// defaultTokenExpiry is the lifetime of a token from parleyd token.
const defaultTokenExpiry = 24 * time.Hour

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("parleyd token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", app.DefaultDataDir, "the server's data directory, holding its signing key")
	var tc app.TokenConfig
	fs.StringVar(&tc.SecretFile, "token-secret-file", "", "sign with this HS256 secret instead of the data directory's key")
	fs.StringVar(&tc.Issuer, "token-issuer", "", "iss claim to put in the token")
	fs.StringVar(&tc.Audience, "token-audience", "", "aud claim to put in the token")
	ttl := fs.Duration("expiry", defaultTokenExpiry, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: parleyd token [--data-dir DIR] [--expiry %.0fh] <user>\n\nPrints a bearer token for <user>.\n\nFlags:\n", defaultTokenExpiry.Hours())
		fs.PrintDefaults()
	}
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("token: give exactly one user name")
	}
	tok, _, err := app.MintToken(tc, *dataDir, fs.Arg(0), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func tokenFlags(fs *flag.FlagSet, tc *app.TokenConfig) {
	fs.StringVar(&tc.SecretFile, "token-secret-file", "", "file with the HS256 secret (>= 32 bytes) shared with your backend; default: DATA_DIR/token-hs256.key, created on first start")
	fs.StringVar(&tc.PublicKeyFile, "token-public-key", "", "PEM public key verifying your backend's RS256 (RSA) or EdDSA (Ed25519) tokens")
	fs.StringVar(&tc.JWKSFile, "token-jwks", "", "JSON Web Key Set file of RSA/Ed25519 public keys verifying your backend's tokens (by kid)")
	fs.StringVar(&tc.Issuer, "token-issuer", "", "require this iss claim in every token")
	fs.StringVar(&tc.Audience, "token-audience", "", "require this aud claim in every token")
	fs.DurationVar(&tc.Leeway, "token-leeway", app.DefaultTokenLeeway, "clock skew tolerated on exp and iat")
}

// servePprof serves the runtime's profiles on their own listener, apart
// from the API port.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}

// parseWithEnv sets each flag from PARLEY_<NAME> when present, then parses
// args, so the command line wins. Flags may come before or after the other
// arguments (parleyd token bob --data-dir data); after "--" everything is
// an argument. fs.Args() returns the arguments that are not flags.
func parseWithEnv(fs *flag.FlagSet, args []string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return parseInterspersed(fs, args)
}

// parseInterspersed parses args with fs, letting flags follow non-flag
// arguments: the flag package stops at the first non-flag, so parsing
// resumes after each one. The non-flags are then fs's arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		if n := len(args) - len(left); n > 0 && args[n-1] == "--" {
			rest = append(rest, left...) // after "--", nothing is a flag
			break
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
	// Parse once more with only the non-flags behind "--", so fs.Args()
	// reports them all; no flag is set twice.
	return fs.Parse(append([]string{"--"}, rest...))
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format %q: want text or json", format)
}
