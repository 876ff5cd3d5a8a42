// Package postgres is the cluster Store: rooms and history in PostgreSQL,
// through github.com/jackc/pgx/v5, so that several parleyd nodes share one
// history and one order per room.
//
// The rooms row is the single authority for a room's order: seqs are read
// from rooms.last_seq and written back inside the transaction that stores
// the messages, with the row locked, so nodes appending to the same room
// take turns on that row and the room's seqs stay gap-free whichever node
// stored them. Every append of a process goes through one writer goroutine
// (writer.go) that commits the appends of all rooms in batches: one
// transaction and one WAL flush per batch (group commit), each caller
// answered only after COMMIT. Reads, room creation, membership and pruning
// go straight through the connection pool: PostgreSQL's row locks let them
// run beside the writer.
//
// The schema lives in its own PostgreSQL schema (Config.Schema) and is
// brought up to date on Open under an advisory lock (migrate.go), so nodes
// that start together do not race.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// Defaults for the zero values of Config. The batch defaults are the same
// for both SQL stores.
const (
	DefaultSchema         = "parley"
	DefaultMaxBatch       = groupcommit.DefaultMaxBatch
	DefaultMaxBatchDelay  = groupcommit.DefaultMaxDelay
	DefaultMaxConns       = 8
	DefaultConnectTimeout = 2 * time.Second
	DefaultQueryTimeout   = 5 * time.Second
)

// schemaName is what Config.Schema may be: a plain lower-case identifier
// that needs no quoting anywhere.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Config says which database to use and how the writer batches. The zero
// value of every field but DSN means its default.
type Config struct {
	// DSN is a libpq connection string or URL, such as
	// "postgres://parley@db:5432/parley?sslmode=verify-full". Its
	// connect_timeout, if set, wins over ConnectTimeout's default.
	DSN string
	// Schema is the PostgreSQL schema that holds Parley's tables (default
	// DefaultSchema); Open creates it if it is missing. Nodes that share a
	// history must use the same one.
	Schema string
	// MaxBatch is the most appends committed in one transaction (default
	// DefaultMaxBatch). 1 turns group commit off.
	MaxBatch int
	// MaxBatchDelay is the group commit window: how long the writer may hold
	// a batch open for more appends once its queue is empty (default
	// DefaultMaxBatchDelay). It waits only while the batch is smaller than
	// the one before; a lone appender never waits. Negative: never wait.
	MaxBatchDelay time.Duration
	// MaxConns is the size of the connection pool shared by the writer (one
	// connection while it commits) and the reads (default DefaultMaxConns).
	MaxConns int
	// ConnectTimeout bounds dialling and authenticating a new connection
	// (default DefaultConnectTimeout), so that an unreachable server is
	// reported rather than waited for.
	ConnectTimeout time.Duration
	// QueryTimeout bounds every statement (sent to the server as
	// statement_timeout, which includes waiting for locks), the time a
	// transaction may sit idle (idle_in_transaction_session_timeout, so a
	// node that vanishes mid-batch does not hold its rooms' rows), and each
	// writer batch as a whole on the client side (default
	// DefaultQueryTimeout).
	QueryTimeout time.Duration
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("postgres: DSN is required (e.g. postgres://user@host:5432/db)"))
	} else if _, err := pgxpool.ParseConfig(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("postgres: DSN: %w", err))
	}
	if c.Schema != "" && !schemaName.MatchString(c.Schema) {
		errs = append(errs, fmt.Errorf("postgres: Schema %q must be 1–63 characters of a-z, 0-9 and '_', not starting with a digit", c.Schema))
	}
	if c.MaxBatch < 0 || c.MaxBatch > groupcommit.MaxMaxBatch {
		errs = append(errs, fmt.Errorf("postgres: MaxBatch %d must be between 1 and %d (0 means %d)", c.MaxBatch, groupcommit.MaxMaxBatch, DefaultMaxBatch))
	}
	if c.MaxConns < 0 || c.MaxConns > 1000 {
		errs = append(errs, fmt.Errorf("postgres: MaxConns %d must be between 1 and 1000 (0 means %d)", c.MaxConns, DefaultMaxConns))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("postgres: ConnectTimeout %v must not be negative (0 means %v)", c.ConnectTimeout, DefaultConnectTimeout))
	}
	if c.QueryTimeout < 0 || (c.QueryTimeout > 0 && c.QueryTimeout < time.Millisecond) {
		errs = append(errs, fmt.Errorf("postgres: QueryTimeout %v must be at least 1ms (0 means %v)", c.QueryTimeout, DefaultQueryTimeout))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatchDelay == 0 {
		c.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	return c
}

// poolConfig turns c into pgxpool's configuration: every connection uses
// c.Schema and carries the timeouts.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: DSN: %w", err)
	}
	cc := pc.ConnConfig
	switch {
	case c.ConnectTimeout > 0:
		cc.ConnectTimeout = c.ConnectTimeout
	case cc.ConnectTimeout == 0:
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	ms := strconv.FormatInt(c.QueryTimeout.Milliseconds(), 10)
	cc.RuntimeParams["search_path"] = c.Schema
	cc.RuntimeParams["statement_timeout"] = ms
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = ms
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "parleyd"
	}
	pc.MaxConns = int32(c.MaxConns)
	// A connection idle for a while is pinged before use, so that one the
	// server dropped meanwhile (a restart) is replaced rather than failing
	// a batch whose outcome would then be unknown; the ping is bounded so
	// that a silent server costs one timeout, not a hang. Under load
	// connections are never idle that long and nothing is pinged.
	idle := pingIdle
	pc.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool { return p.IdleDuration > idle }
	pc.PingTimeout = c.QueryTimeout
	return pc, nil
}

// pingIdle is how long a connection may sit idle before it is pinged on
// its way out of the pool. (pgxpool's default is one second.)
var pingIdle = 100 * time.Millisecond

// Store is a store.Store on PostgreSQL. Open makes one; it is safe for
// concurrent use, and several Stores (in one process or on many nodes) may
// share a database and schema.
type Store struct {
	cfg  Config
	pool *pgxpool.Pool
	w    *writer
	gate sqlstore.Gate
}

var _ store.Store = (*Store)(nil)

// Open connects to the database, brings the schema up to date (creating it
// if needed) and starts the writer. It fails within about
// Config.ConnectTimeout if the server cannot be reached.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pc, err := cfg.poolConfig()
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pc.ConnConfig, cfg.Schema); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", classify(err))
	}
	s := &Store{cfg: cfg, pool: pool}
	s.w = startWriter(pool, cfg)
	return s, nil
}

// Ping reports whether PostgreSQL answers: it takes a connection from the
// pool (dialling one if none is idle) and runs an empty statement, within
// ctx and Config.QueryTimeout. The server's health check calls it: an error
// (wrapping store.ErrUnavailable when the server is out of reach) means appends
// would fail now. After Close it returns store.ErrClosed.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", classify(err))
	}
	return nil
}

// Close finishes the appends already queued, stops the writer and closes
// the pool. Calls after Close return store.ErrClosed; a second Close
// returns nil.
func (s *Store) Close() error {
	return s.gate.Close(func() error {
		s.w.close()
		s.pool.Close()
		return nil
	})
}

// queryCtx bounds a read by QueryTimeout on the client side too: the
// server's statement_timeout cannot help when the server itself is gone.
func (s *Store) queryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.QueryTimeout)
}
