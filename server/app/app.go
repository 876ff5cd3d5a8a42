// Package app wires Parley together: it opens the store, creates the hub,
// the ChatService and the listeners, and owns start-up and graceful
// shutdown. It is the only package that knows every piece.
//
// # Glossary
//
// The code uses one word per concept, in every package:
//
//   - session: one Join RPC, a stream on which a client joins rooms, sends,
//     and receives events (api's session); Subscribe opens a receive-only
//     one. Never called a join.
//   - connection: the hub's side of a session (hub.Conn): its queue of
//     frames and the rooms it is in.
//   - join, leave: a connection entering or leaving one room (the join and
//     leave frames, Hub.Join, Hub.Leave).
//   - send: a user putting a message in a room: the SendMessage RPC, the
//     Join stream's post frame (named Post in the proto, kept for wire
//     compatibility), Hub.Send and Hub.StartSend, which queues the send and
//     returns a function that waits for it.
//   - append: the store adding an entry to a room's log and giving it the
//     room's next seq (Store.Append, Store.StartAppend).
//   - seq, head: an entry's position in its room's log; the newest seq.
//   - deliver: the hub handing a stored entry to the connections in its
//     room, in seq order, once per node.
//   - event, frame: what happened in a room (hub.Event), and the bytes it
//     was encoded to once for every connection (hub.Frame).
//   - enqueue, write: putting frames on a connection's queue, and writing
//     them to its stream.
//   - replay, resume: sending a joining connection the stored entries after
//     the after_seq it gave; a client resumes by joining with after_seq.
//   - cut off: ending a connection that fell too far behind, telling it the
//     seq to resume from.
package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/api"
	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/broker"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
	"github.com/parleychat/parley/server/internal/store/postgres"
	"github.com/parleychat/parley/server/internal/store/sqlite"
	"github.com/parleychat/parley/server/internal/transport"
)

// Config is everything parleyd can be told. cmd/parleyd fills it from flags
// and PARLEY_* environment variables; zero values mean the defaults.
type Config struct {
	// Listen is the main address: gRPC, grpc-web, REST and the web UI
	// (default DefaultListen).
	Listen string
	// GRPCListen is an optional second address for native gRPC only.
	GRPCListen string
	// DataDir holds the signing key and the database (default
	// DefaultDataDir).
	DataDir string
	// Store is "sqlite" (the default: DataDir/parley.db), "memory" (nothing
	// survives a restart), or a PostgreSQL URL ("postgres://...") shared by
	// the nodes of a cluster.
	Store string
	// Broker, a nats:// URL (several comma-separated), joins this node to a
	// cluster sharing a postgres:// Store; empty runs a single node.
	Broker string
	// BrokerSubject prefixes the cluster's NATS subjects (default
	// DefaultBrokerSubject); clusters sharing a NATS must use different ones.
	BrokerSubject string
	// NodeID names this node in the cluster (default: host name and port).
	NodeID string
	// NodeTimeout is how long a silent node keeps its presence (default
	// DefaultNodeTimeout).
	NodeTimeout time.Duration
	// PostgresSchema holds Parley's tables in a postgres:// store (default
	// DefaultPostgresSchema); the nodes of one cluster share it.
	PostgresSchema string
	// SQLite tunes the embedded store's group commit; its Path is set from
	// DataDir.
	SQLite sqlite.Config
	// DBCheckTimeout bounds the check of the embedded database at start
	// (SQLite's quick_check; default DefaultDBCheckTimeout); when it runs
	// out, the rest of the database goes unchecked and parleyd starts
	// anyway, saying so.
	// Negative: no check.
	DBCheckTimeout time.Duration
	// Dev enables DevLogin, which mints a token for any name.
	Dev bool
	// DevAllowRemote lets Dev run on a non-loopback address.
	DevAllowRemote bool
	// Tokens says which tokens are accepted besides those signed with the
	// data directory's key.
	Tokens TokenConfig
	// TLSCert and TLSKey are PEM files; both or neither.
	TLSCert, TLSKey string
	// AllowedOrigins may use grpc-web from other origins.
	AllowedOrigins []string
	// MaxBodyBytes bounds a message body (default DefaultMaxBodyBytes).
	MaxBodyBytes int
	// MaxMessageBytes bounds any one received gRPC message (default
	// DefaultMaxMessageBytes).
	MaxMessageBytes int
	// MaxStreamsPerConn bounds concurrent streams on one HTTP/2 connection
	// (default DefaultMaxStreamsPerConn).
	MaxStreamsPerConn uint32
	// MaxQueueBytes bounds each stream's outbound queue (default
	// DefaultMaxQueueBytes).
	MaxQueueBytes int
	// MaxRoomsPerConn bounds the rooms one stream may be in (default
	// DefaultMaxRoomsPerConn).
	MaxRoomsPerConn int
	// SendRate bounds each user's messages per second across all their
	// streams and REST (default DefaultSendRate; negative: no limit);
	// SendBurst is the bucket size (default 2×SendRate).
	SendRate  float64
	SendBurst int
	// RoomCreateRate bounds the rooms each user may create per second
	// (default DefaultRoomCreateRate; negative: no limit), with bursts of
	// RoomCreateBurst (default DefaultRoomCreateBurst).
	RoomCreateRate  float64
	RoomCreateBurst int
	// MaxJoinStreamsPerUser bounds one user's open Join streams (default
	// DefaultMaxJoinStreamsPerUser).
	MaxJoinStreamsPerUser int
	// ReadMarkerFlush is how often the read markers clients marked are
	// stored, all in one batch (default DefaultReadMarkerFlush): those
	// marked since the last flush are lost if the process dies.
	ReadMarkerFlush time.Duration
	// ReceiptsMaxMembers is the most readers a room may have for receipts
	// ("seen by"; default DefaultReceiptsMaxMembers; negative: none).
	ReceiptsMaxMembers int
	// ReceiptInterval is the shortest time between two receipts of one
	// reader in one room (default DefaultReceiptInterval). The windows
	// receipts are coalesced over last it and a random part of up to a
	// quarter of it, so that rooms send theirs apart. Longer windows send
	// fewer frames (one write per connection of the room per window) and
	// make "seen by" lag further.
	ReceiptInterval time.Duration
	// PresencePageThreshold is the number of distinct users online, or of
	// connections, from which a room is big: a joiner gets the online
	// count and the first page of its presence, and pages through the
	// rest, and presence changes are gathered (default
	// DefaultPresencePageThreshold; see docs/clients.md).
	PresencePageThreshold int
	// PresenceDiffInterval is how long a large room gathers presence
	// changes before it announces them in one diff (default
	// DefaultPresenceDiffInterval).
	PresenceDiffInterval time.Duration
	// DefaultRoom is a public room created at start if missing (default
	// DefaultRoomName; "-" for none).
	DefaultRoom string
	// Retention, if set, deletes old messages in the background every
	// RetentionInterval (default DefaultRetentionInterval).
	Retention         store.Retention
	RetentionInterval time.Duration
	// MaxHeaderBytes bounds a request's headers on every front door
	// (default DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds how long a client may take to send its
	// HTTP request headers, the HTTP/2 handshake, or a grpc-web
	// WebSocket's header frame (default DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it, and KeepaliveTimeout how long it then waits before
	// dropping it (defaults DefaultKeepaliveTime, DefaultKeepaliveTimeout).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown (default
	// DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Log receives the server's logs (default slog.Default()).
	Log *slog.Logger
}

// maxPresenceDiffInterval bounds Config.PresenceDiffInterval.
const maxPresenceDiffInterval = 5 * time.Second

// Defaults of the Config fields that app itself resolves.
const (
	DefaultDataDir           = "data"
	DefaultStore             = "sqlite"
	DefaultRoomName          = "lobby"
	DefaultDBCheckTimeout    = 30 * time.Second
	DefaultRetentionInterval = time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
)

// Defaults of the Config fields that app passes on as they are: a zero
// value means the default of the package that uses it, named here for
// cmd/parleyd's flags (which cannot import those packages).
const (
	DefaultListen            = transport.DefaultListen
	DefaultMaxMessageBytes   = transport.DefaultMaxMessageBytes
	DefaultMaxStreamsPerConn = transport.DefaultMaxStreamsPerConn
	DefaultMaxHeaderBytes    = transport.DefaultMaxHeaderBytes
	DefaultReadHeaderTimeout = transport.DefaultReadHeaderTimeout
	DefaultKeepaliveTime     = transport.DefaultKeepaliveTime
	DefaultKeepaliveTimeout  = transport.DefaultKeepaliveTimeout

	DefaultMaxBodyBytes          = api.DefaultMaxBodyBytes
	DefaultSendRate              = api.DefaultSendRate
	DefaultRoomCreateRate        = api.DefaultRoomCreateRate
	DefaultRoomCreateBurst       = api.DefaultRoomCreateBurst
	DefaultMaxJoinStreamsPerUser = api.DefaultMaxJoinStreamsPerUser

	DefaultMaxQueueBytes   = hub.DefaultMaxQueueBytes
	DefaultMaxRoomsPerConn = hub.DefaultMaxRoomsPerConn
	DefaultBrokerSubject   = hub.DefaultSubject
	DefaultNodeTimeout     = hub.DefaultNodeTimeout

	DefaultReadMarkerFlush       = hub.DefaultReadMarkFlush
	DefaultReceiptsMaxMembers    = hub.DefaultReceiptsMaxMembers
	DefaultReceiptInterval       = hub.DefaultReceiptInterval
	DefaultPresencePageThreshold = hub.DefaultPresencePageThreshold
	DefaultPresenceDiffInterval  = hub.DefaultPresenceBatchWindow

	DefaultPostgresSchema      = postgres.DefaultSchema
	DefaultSQLiteMaxBatch      = sqlite.DefaultMaxBatch
	DefaultSQLiteMaxBatchDelay = sqlite.DefaultMaxBatchDelay
	DefaultTokenLeeway         = auth.DefaultLeeway
)

// TokenConfig configures token verification.
type TokenConfig struct {
	// SecretFile holds the HS256 secret (at least 32 bytes) shared with the
	// app's backend; default: the key parleyd creates in DataDir.
	SecretFile string
	// PublicKeyFile is a PEM public key (RSA for RS256, Ed25519 for EdDSA).
	PublicKeyFile string
	// JWKSFile is a JSON Web Key Set file of RSA and Ed25519 public keys.
	JWKSFile string
	// Issuer and Audience, if set, are required in every token.
	Issuer, Audience string
	// Leeway tolerates clock skew on exp and iat (default
	// DefaultTokenLeeway).
	Leeway time.Duration
}

// Keys loads the keys tc names. dataDir holds the default HS256 secret,
// created there on first use.
func (tc TokenConfig) Keys(dataDir string) (*auth.Keys, error) {
	return tc.keys(dataDir, auth.LoadOrCreateKey)
}

// keys loads the keys tc names, reading the default HS256 secret from
// dataDir with loadKey.
func (tc TokenConfig) keys(dataDir string, loadKey func(dir string) ([]byte, error)) (*auth.Keys, error) {
	var secret []byte
	var err error
	if tc.SecretFile != "" {
		secret, err = os.ReadFile(tc.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("token secret: %w", err)
		}
	} else if secret, err = loadKey(dataDir); err != nil {
		return nil, err
	}
	cfg := auth.Config{Secret: secret, Issuer: tc.Issuer, Audience: tc.Audience, Leeway: tc.Leeway}
	if tc.PublicKeyFile != "" {
		keys, err := auth.LoadPublicKeyFile(tc.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.PublicKeys = append(cfg.PublicKeys, keys...)
	}
	if tc.JWKSFile != "" {
		keys, err := auth.LoadJWKSFile(tc.JWKSFile)
		if err != nil {
			return nil, err
		}
		cfg.PublicKeys = append(cfg.PublicKeys, keys...)
	}
	keys, err := auth.NewKeys(cfg)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	return keys, nil
}

// secretPath is the absolute path of the HS256 secret's file, for logs.
func (tc TokenConfig) secretPath(dataDir string) string {
	p := tc.SecretFile
	if p == "" {
		p = filepath.Join(dataDir, auth.KeyFile)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.DataDir, DefaultDataDir)
	def(&c.Store, DefaultStore)
	def(&c.DefaultRoom, DefaultRoomName)
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = DefaultRetentionInterval
	}
	if c.DBCheckTimeout == 0 {
		c.DBCheckTimeout = DefaultDBCheckTimeout
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// orDefault is n, or def where n is zero or negative: the value a package
// that defaults its limit this way will use.
func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Store != "" && c.Store != "sqlite" && c.Store != "memory" && !isPostgresURL(c.Store) {
		errs = append(errs, fmt.Errorf("store %q: want sqlite, memory or a postgres:// URL", c.Store))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls: give both --tls-cert and --tls-key, or neither"))
	}
	if c.Dev && !c.DevAllowRemote && c.Listen != "" && !isLoopback(c.Listen) {
		errs = append(errs, fmt.Errorf("--dev hands out tokens to anyone: it refuses the non-loopback address %s unless --dev-allow-remote is also given", c.Listen))
	}
	if c.Broker != "" && !isPostgresURL(c.Store) {
		errs = append(errs, errors.New("--broker needs a --store postgres://… that every node shares: an embedded store is one node's alone"))
	}
	if c.GRPCListen != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("grpc-listen: only needed with TLS; without it gRPC shares --listen"))
	}
	if body, msg := orDefault(c.MaxBodyBytes, DefaultMaxBodyBytes), orDefault(c.MaxMessageBytes, DefaultMaxMessageBytes); body > msg/2 {
		errs = append(errs, fmt.Errorf("max-body-bytes %d must be at most half of max-message-bytes %d", body, msg))
	}
	if c.PresencePageThreshold < 0 {
		errs = append(errs, fmt.Errorf("presence-page-threshold %d: want a number of users, or 0 for the default %d", c.PresencePageThreshold, DefaultPresencePageThreshold))
	}
	if c.PresenceDiffInterval < 0 || c.PresenceDiffInterval > maxPresenceDiffInterval {
		errs = append(errs, fmt.Errorf("presence-diff-interval %v: want at most %v (0: the default, %v); presence older than that is no longer live", c.PresenceDiffInterval, maxPresenceDiffInterval, DefaultPresenceDiffInterval))
	}
	if c.KeepaliveTime > 0 && c.KeepaliveTime < time.Second {
		errs = append(errs, fmt.Errorf("keepalive-time %v: grpc-go pings no more often than every 1s", c.KeepaliveTime))
	}
	for _, addr := range []string{c.Listen, c.GRPCListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("address %q: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Server is a running parleyd.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store // db, watched by storeHealth
	db         store.Store // the store itself, for what only some kinds offer (Ping, Check, Collectors)
	storeHlth  *storeHealth
	healthMu   sync.Mutex // orders updates of the gRPC health status
	broker     *broker.NATS
	brokerHlth brokerHealth
	hub        *hub.Hub
	svc        *api.Service
	grpc       *grpc.Server
	health     *health.Server
	net        *transport.Server
	metrics    *metrics
	draining   atomic.Bool
	storeDown  atomic.Bool
	stopBG     context.CancelFunc // stops background work
	bg         sync.WaitGroup
	// Keys verifies and mints the server's tokens.
	Keys *auth.Keys
}

// Start opens the store, binds the listeners and starts serving.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: cfg.Log}
	var err error
	if s.Keys, err = cfg.Tokens.Keys(cfg.DataDir); err != nil {
		return nil, err
	}
	s.log.Info("token signing key", "kid", s.Keys.KeyID(), "file", cfg.Tokens.secretPath(cfg.DataDir))
	if s.db, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	s.storeHlth = newStoreHealth(cfg, s.log, s.refreshHealth)
	s.store = watchedStore{Store: s.db, h: s.storeHlth}
	s.checkStore(ctx)
	if err := s.ensureDefaultRoom(ctx); err != nil {
		s.store.Close()
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = defaultNodeID()
		s.cfg.NodeID = cfg.NodeID
	}
	hc := hub.Config{MaxQueueBytes: cfg.MaxQueueBytes, MaxRoomsPerConn: cfg.MaxRoomsPerConn,
		Subject: cfg.BrokerSubject, NodeID: cfg.NodeID, NodeTimeout: cfg.NodeTimeout,
		ReadMarkFlush: cfg.ReadMarkerFlush, ReceiptsMaxMembers: cfg.ReceiptsMaxMembers, ReceiptInterval: cfg.ReceiptInterval,
		PresencePageThreshold: cfg.PresencePageThreshold, PresenceBatchWindow: cfg.PresenceDiffInterval,
		Retention: cfg.Retention, WireForm: api.WireForm}
	if cfg.Broker != "" {
		if s.broker, err = broker.Connect(cfg.Broker, cfg.NodeID, s.log); err != nil {
			s.store.Close()
			return nil, err
		}
		hc.Broker = s.broker
	}
	s.hub = hub.New(hc, s.store, api.EncodeEvent, s.log)
	if s.broker != nil {
		s.broker.OnReconnect(func() {
			s.log.Info("broker reconnected: catching up from the store")
			s.hub.CatchUp()
		})
	}
	s.svc = api.New(api.Config{Hub: s.hub, Store: s.store, Keys: s.Keys, Log: s.log, MaxBodyBytes: cfg.MaxBodyBytes, Dev: cfg.Dev,
		SendRate: cfg.SendRate, SendBurst: cfg.SendBurst, RoomCreateRate: cfg.RoomCreateRate, RoomCreateBurst: cfg.RoomCreateBurst,
		MaxJoinStreamsPerUser: cfg.MaxJoinStreamsPerUser})
	collectors := append(storeCollectors(s.db), s.storeHlth.collectors()...)
	if s.broker != nil {
		s.brokerHlth.log = s.log
		collectors = append(collectors, s.brokerHlth.collector())
	}
	s.metrics = newMetrics(s.hub, append(collectors, s.hub.Collectors()...)...)
	tc := s.transportConfig()
	s.grpc = s.newGRPCServer(tc)
	if s.net, err = transport.Listen(ctx, tc, s.grpc); err != nil {
		s.closeBackends()
		return nil, err
	}

	s.net.Serve()
	s.startRetention()
	s.log.Info("parleyd listening", "addr", s.net.Addr().String(), "store", storeKind(cfg.Store), "data_dir", cfg.DataDir, "tls", cfg.TLSCert != "")
	if cfg.Dev {
		s.log.Warn("DEV MODE: anyone can get a token for any user name through DevLogin; never expose this server")
	}
	return s, nil
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.Store == "memory" {
		return memory.New(), nil
	}
	if isPostgresURL(cfg.Store) {
		st, err := postgres.Open(ctx, postgres.Config{DSN: cfg.Store, Schema: cfg.PostgresSchema})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	}
	sc := cfg.SQLite
	sc.Path = sqlitePath(cfg)
	st, err := sqlite.Open(ctx, sc)
	if errors.Is(err, store.ErrCorrupt) {
		return nil, fmt.Errorf("open store: %w: %s", err, damageAdvice(cfg))
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

func (s *Server) ensureDefaultRoom(ctx context.Context) error {
	if s.cfg.DefaultRoom == "-" {
		return nil
	}
	_, err := s.store.CreateRoom(ctx, store.Room{Name: s.cfg.DefaultRoom, Visibility: store.Public, CreatedBy: "parleyd"})
	// A damaged database has been reported already: serve what can be read.
	if err != nil && !errors.Is(err, store.ErrRoomExists) && !errors.Is(err, store.ErrCorrupt) {
		return fmt.Errorf("create default room %q: %w", s.cfg.DefaultRoom, err)
	}
	return nil
}

func (s *Server) newGRPCServer(tc transport.Config) *grpc.Server {
	opts := append(transport.GRPCServerOptions(tc),
		grpc.ForceServerCodecV2(api.NewCodec()),
		grpc.ChainUnaryInterceptor(s.svc.UnaryInterceptor),
		grpc.ChainStreamInterceptor(s.svc.StreamInterceptor),
		// Many idle streams: share write buffers. Read buffers are pooled
		// already, because the split listener hands grpc-go bare TCP conns.
		grpc.SharedWriteBuffer(true),
		// Marks the Join streams grpc-go's own transport serves: their
		// handler goroutine may read, since writing their status ends
		// that read (see api.StreamTap).
		grpc.InTapHandle(api.StreamTap),
	)
	gs := grpc.NewServer(opts...)
	parleyv1.RegisterChatServiceServer(gs, s.svc)
	s.health = health.NewServer()
	s.refreshHealth()
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
	return gs
}

func (s *Server) transportConfig() transport.Config {
	tc := transport.Config{
		Listen: s.cfg.Listen, GRPCListen: s.cfg.GRPCListen, AllowedOrigins: s.cfg.AllowedOrigins,
		MaxMessageBytes: s.cfg.MaxMessageBytes, MaxStreamsPerConn: s.cfg.MaxStreamsPerConn, Log: s.log,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		KeepaliveTime: s.cfg.KeepaliveTime, KeepaliveTimeout: s.cfg.KeepaliveTimeout,
		Healthy:      func() bool { return !s.draining.Load() && !s.storeDown.Load() && !s.storeHlth.damaged.Load() },
		HealthDetail: s.healthDetail,
		UI:           uiHandler(),
		Metrics:      s.metrics.handler(),
		Conns:        &s.metrics.grpcConns,
	}
	if s.cfg.TLSCert != "" {
		tc.TLS = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
			GetCertificate: certLoader(s.cfg.TLSCert, s.cfg.TLSKey)}
	}
	return tc
}

// certLoader loads the key pair once; a failure is reported per handshake.
func certLoader(certFile, keyFile string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if err != nil {
			return nil, fmt.Errorf("load TLS key pair: %w", err)
		}
		return &cert, nil
	}
}

// closeBackends closes the hub, then the broker and the store: the hub's
// own work (catch-up, gap fills) reads the store until the hub is closed.
func (s *Server) closeBackends() error {
	if s.hub != nil {
		s.hub.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
	if err := s.store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// defaultNodeID names a node by its host and a random suffix, so two nodes
// on one host differ.
func defaultNodeID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", host, b)
}

// storeKind names the store for logs without a DSN's credentials.
func storeKind(s string) string {
	if isPostgresURL(s) {
		return "postgres"
	}
	return s
}

// watchStore reports NOT_SERVING (gRPC health and /healthz) while the
// store's database cannot be reached, and degraded while the cluster's
// broker cannot, checking every interval.
func (s *Server) watchStore(ctx context.Context, interval time.Duration) {
	type pinger interface{ Ping(context.Context) error }
	var deps []pinger
	if p, ok := s.db.(pinger); ok {
		deps = append(deps, p)
	}
	if len(deps) == 0 && s.broker == nil {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		healthy := true
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ctx, interval)
			var err error
			for _, p := range deps {
				if err = p.Ping(pctx); err != nil {
					break
				}
			}
			cancel()
			if s.broker != nil {
				bctx, cancel := context.WithTimeout(ctx, interval)
				s.brokerHlth.observe(s.broker.Ping(bctx))
				cancel()
			}
			if ctx.Err() != nil {
				return
			}
			if now := err == nil; now != healthy {
				healthy = now
				s.storeDown.Store(!now)
				if !now {
					s.log.Error("store unreachable: reporting NOT_SERVING", "err", err)
				} else {
					s.log.Info("store reachable again")
				}
				s.refreshHealth()
			}
		}
	}()
}

// healthDetail says, for /healthz, what is wrong with the store and the
// broker; "" if nothing.
func (s *Server) healthDetail() string {
	var parts []string
	for _, d := range []string{s.storeHlth.detail(), s.brokerHlth.detail()} {
		if d != "" {
			parts = append(parts, d)
		}
	}
	return strings.Join(parts, "; ")
}

// refreshHealth sets the gRPC health status from what is known: NOT_SERVING
// while the store is out of reach or the database is damaged; an
// unreachable broker leaves the node SERVING, degraded (brokerHealth).
// (Draining is health.Server.Shutdown's, which ignores later updates.)
func (s *Server) refreshHealth() {
	if s.health == nil {
		return // not serving yet: newGRPCServer calls it
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	st := healthpb.HealthCheckResponse_SERVING
	if s.storeDown.Load() || s.storeHlth.damaged.Load() {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(parleyv1.ChatService_ServiceDesc.ServiceName, st)
}

// startRetention prunes old messages every RetentionInterval, if a
// retention is configured, until shutdown.
func (s *Server) startRetention() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBG = cancel
	s.watchStore(ctx, 2*time.Second)
	if s.broker != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := s.hub.Run(ctx); err != nil {
				s.log.Error("cluster", "err", err)
			}
		}()
	}
	if s.cfg.Retention == (store.Retention{}) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(s.cfg.RetentionInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := s.store.Prune(ctx, s.cfg.Retention)
			if n > 0 {
				s.log.Info("retention deleted old messages", "count", n)
			}
			// A damaged or full database is reported once, by storeHealth.
			if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrCorrupt) && !errors.Is(err, store.ErrFull) {
				s.log.Error("retention", "err", err)
			}
		}
	}()
}

// Addr returns the main listener's address.
func (s *Server) Addr() string { return s.net.Addr().String() }

// Hub returns the server's hub, for tests and metrics.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Errors delivers a listener's failure.
func (s *Server) Errors() <-chan error { return s.net.Errors() }

// Shutdown stops the server gracefully: it reports NOT_SERVING, ends every
// stream with UNAVAILABLE ("server shutting down, reconnect"), lets unary
// calls finish, closes the hub (waiting for its background work), then the
// broker and the store, within cfg.ShutdownTimeout.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	s.draining.Store(true)
	s.stopBG()
	s.bg.Wait()
	s.health.Shutdown()
	s.log.Info("shutting down: ending streams")
	var errs []error
	if err := s.svc.Drain(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.net.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	s.svc.Wait()
	if err := s.closeBackends(); err != nil {
		errs = append(errs, err)
	}
	s.log.Info("shut down")
	return errors.Join(errs...)
}

// Run starts the server and serves until ctx is done, then shuts down.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-s.Errors():
		s.log.Error("listener failed", "err", err)
	}
	if serr := s.Shutdown(context.Background()); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// MintToken signs an HS256 token for user with the secret tc names, by
// default the key the server keeps in dataDir. It never creates a key: a
// token signed with a new one would be refused by the server.
func MintToken(tc TokenConfig, dataDir, user string, ttl time.Duration) (string, time.Time, error) {
	keys, err := tc.keys(dataDir, loadServerKey)
	if err != nil {
		return "", time.Time{}, err
	}
	return keys.Mint(user, ttl)
}

// loadServerKey reads the key a server created in dir, saying where it
// looked and what to do when there is none.
func loadServerKey(dir string) ([]byte, error) {
	key, err := auth.LoadKey(dir)
	if errors.Is(err, auth.ErrNoKey) {
		return nil, fmt.Errorf("%w; parleyd creates it on its first start in its --data-dir: "+
			"give the same --data-dir (or PARLEY_DATA_DIR) here, or the server's --token-secret-file", err)
	}
	return key, err
}

// isLoopback reports whether addr's host is a loopback address or localhost.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// GRPCAddr returns the native gRPC listener's address, or "" if there is none.
func (s *Server) GRPCAddr() string {
	if a := s.net.GRPCAddr(); a != nil {
		return a.String()
	}
	return ""
}
