// Package sqlite is the embedded Store: SQLite in the data directory, through
// the pure-Go driver modernc.org/sqlite, so parleyd needs no cgo and no
// database server.
//
// Every write goes through one writer goroutine (writer.go) that commits the
// appends of all rooms in batches: one transaction and one fsync per batch
// (group commit), each caller answered only after its batch is durable.
// Reads use a separate pool of read-only connections, which WAL mode lets
// run alongside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// Defaults for the zero values of Config. The batch defaults are the same
// for both SQL stores.
const (
	DefaultMaxBatch      = groupcommit.DefaultMaxBatch
	DefaultMaxBatchDelay = groupcommit.DefaultMaxDelay
	DefaultReadConns     = 4
	DefaultBusyTimeout   = 5 * time.Second
)

// Config says where the database lives and how the writer batches. The zero
// value of every field but Path means its default.
type Config struct {
	// Path is the database file; its directory must exist and be writable
	// (WAL mode keeps two more files beside it).
	Path string
	// MaxBatch is the most requests committed in one transaction, with one
	// fsync (default DefaultMaxBatch). 1 turns group commit off.
	MaxBatch int
	// MaxBatchDelay is the group commit window: how long the writer may hold
	// a batch open for more requests once the queue is empty (default
	// DefaultMaxBatchDelay). It waits only while the batch is smaller than
	// the one before, that is while the appenders it just answered are likely
	// to send again; a lone appender never waits. Negative: never wait.
	MaxBatchDelay time.Duration
	// ReadConns is the size of the read pool (default DefaultReadConns).
	ReadConns int
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before failing (default DefaultBusyTimeout).
	BusyTimeout time.Duration
	// MaxBytes, if positive, bounds the database file: a write that would
	// grow it further fails as on a full disk (store.ErrFull), which leaves
	// the rest of the disk to the WAL, the logs and everything else. Pages
	// freed by deletions are reused. Zero: only the disk bounds it.
	MaxBytes int64

	// senderFlushAge is how long a room's senders' counts may stay in
	// the writer's memory before it writes them (senders.go; 0:
	// defaultFlushAge, negative: only when too many). Tests set it.
	senderFlushAge time.Duration
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("sqlite: Path is required"))
	}
	if strings.ContainsRune(c.Path, '?') {
		errs = append(errs, fmt.Errorf("sqlite: Path %q must not contain '?'", c.Path))
	}
	if c.MaxBatch < 0 || c.MaxBatch > groupcommit.MaxMaxBatch {
		errs = append(errs, fmt.Errorf("sqlite: MaxBatch %d must be between 1 and %d (0 means %d)", c.MaxBatch, groupcommit.MaxMaxBatch, DefaultMaxBatch))
	}
	if c.ReadConns < 0 {
		errs = append(errs, fmt.Errorf("sqlite: ReadConns %d must not be negative (0 means %d)", c.ReadConns, DefaultReadConns))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("sqlite: MaxBytes %d must not be negative (0 means no limit)", c.MaxBytes))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqlite: BusyTimeout %v must not be negative (0 means %v)", c.BusyTimeout, DefaultBusyTimeout))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatchDelay == 0 {
		c.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if c.ReadConns == 0 {
		c.ReadConns = DefaultReadConns
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.senderFlushAge == 0 {
		c.senderFlushAge = defaultFlushAge
	}
	return c
}

// Store is a store.Store on SQLite. Open makes one; it is safe for
// concurrent use.
type Store struct {
	cfg   Config
	write *sql.DB // one connection, owned by the writer goroutine
	read  *sql.DB
	reads readStmts // s.read's queries, prepared
	w     *writer
	gate  sqlstore.Gate
	// counts holds the senders' counts the writer has not written to
	// room_senders yet, which readers add (senders.go).
	counts *ledger
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the database at cfg.Path, brings its schema up to
// date and starts the writer.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := checkWritable(cfg.Path); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, counts: newLedger()}
	if err := s.openDBs(ctx); err != nil {
		s.closeDBs()
		return nil, classify(cfg.Path, err)
	}
	w, err := startWriter(ctx, s.write, cfg, s.counts)
	if err != nil {
		s.closeDBs()
		return nil, classify(cfg.Path, err)
	}
	s.w = w
	return s, nil
}

// checkWritable creates the database file if it is missing, so that a
// missing or read-only directory is reported with the operating system's
// reason rather than SQLite's "unable to open database file".
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("sqlite: database directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("sqlite: database directory %s is not a directory", dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: database file must be writable: %w", err)
	}
	return f.Close()
}

func (s *Store) openDBs(ctx context.Context) error {
	var err error
	if s.write, err = openDB(ctx, s.cfg, false); err != nil {
		return err
	}
	s.write.SetMaxOpenConns(1)
	if err := migrate(ctx, s.write); err != nil {
		return err
	}
	if s.read, err = openDB(ctx, s.cfg, true); err != nil {
		return err
	}
	s.read.SetMaxOpenConns(s.cfg.ReadConns)
	s.read.SetMaxIdleConns(s.cfg.ReadConns)
	s.reads.db = s.read
	return nil
}

// openDB opens a pool whose every connection has Parley's pragmas: WAL,
// synchronous=FULL so that an acknowledged append survives power loss too,
// foreign keys, a busy timeout for other processes holding the lock, and
// the statement journal in memory. The writer's connection gets a larger
// page cache (64 MiB) and checkpoints every 10,000 pages instead of 1,000:
// fewer, larger checkpoints write each hot page once instead of many times.
// It also has secure_delete on: SQLite zeroes the bytes a delete or an
// update frees, so a deleted message's text does not linger in the pages'
// free space or on free pages once the WAL is checkpointed. (Text written
// before this version, without it, may still sit in free space until a
// VACUUM; for what secure_delete misses, see bodies.go.)
func openDB(ctx context.Context, cfg Config, readOnly bool) (*sql.DB, error) {
	dsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"+
		"&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)", cfg.Path, cfg.BusyTimeout.Milliseconds())
	if readOnly {
		dsn += "&_pragma=query_only(1)&_pragma=cache_size(-8192)"
	} else {
		dsn += "&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(10000)&_pragma=secure_delete(1)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if err := classify(cfg.Path, err); errors.Is(err, store.ErrCorrupt) {
			return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
		}
		return nil, fmt.Errorf("sqlite: open %s (the file and its directory must be writable: WAL mode keeps %[1]s-wal and %[1]s-shm beside it): %w", cfg.Path, err)
	}
	return db, nil
}

// migrations are the schema's versions: migrations[i] takes a database from
// user_version i to i+1. Append new steps; never edit a released one.
var migrations = []string{
	`CREATE TABLE rooms (
		name            TEXT PRIMARY KEY,
		visibility      INTEGER NOT NULL,
		created_by      TEXT NOT NULL,
		created_at      INTEGER NOT NULL, -- unix nanoseconds
		last_seq        INTEGER NOT NULL DEFAULT 0,
		last_message_at INTEGER NOT NULL DEFAULT 0 -- unix nanoseconds, 0 for none
	) WITHOUT ROWID;
	CREATE TABLE messages (
		room          TEXT NOT NULL REFERENCES rooms(name) DEFERRABLE INITIALLY DEFERRED,
		seq           INTEGER NOT NULL,
		sender        TEXT NOT NULL,
		body          TEXT NOT NULL,
		sent_at       INTEGER NOT NULL, -- unix nanoseconds
		client_msg_id TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (room, seq)
	) WITHOUT ROWID;
	-- Unique per (room, sender, client_msg_id). client_msg_id comes before
	-- sender so that time-ordered ids (UUIDv7, ULID) put a batch's new
	-- entries at the tail of each room's range, one page per room, rather
	-- than one page per (room, sender) (measured: ~1.5x appends/s).
	CREATE UNIQUE INDEX messages_client_msg_id ON messages (room, client_msg_id, sender)
		WHERE client_msg_id <> '';`,
	// Members of private and direct rooms.
	`CREATE TABLE members (
		room TEXT NOT NULL REFERENCES rooms(name) DEFERRABLE INITIALLY DEFERRED,
		user TEXT NOT NULL,
		PRIMARY KEY (room, user)
	) WITHOUT ROWID;
	CREATE INDEX members_by_user ON members (user, room);`,
	// The idempotency index leads with client_msg_id: time-ordered ids
	// (UUIDv7, ULID) from every room and sender then land at the index's
	// tail, a few pages per batch, where leading with room put one page per
	// room in every batch (docs/performance.md, "Second pass"). Same
	// uniqueness.
	`DROP INDEX messages_client_msg_id;
	CREATE UNIQUE INDEX messages_client_msg_id ON messages (client_msg_id, room, sender)
		WHERE client_msg_id <> '';`,
	// Entries of every kind (store.Kind) in the log, and what History
	// reads kept up to date by the writer: on a message's row the seq of
	// its latest edit and whether it was deleted; who reacted with what;
	// and each emoji's count, first seq and first users (a JSON array).
	// Adding columns with constant defaults rewrites no row: old rows read
	// as messages that were never edited or deleted.
	`ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE messages ADD COLUMN target_seq INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE messages ADD COLUMN reply_to_seq INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE messages ADD COLUMN emoji TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN edit_seq INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX messages_by_target ON messages (room, target_seq) WHERE target_seq <> 0;
	CREATE TABLE reactions (
		room       TEXT NOT NULL,
		target_seq INTEGER NOT NULL,
		emoji      TEXT NOT NULL,
		user       TEXT NOT NULL,
		seq        INTEGER NOT NULL, -- the reaction_add entry
		PRIMARY KEY (room, target_seq, emoji, user)
	) WITHOUT ROWID;
	CREATE INDEX reactions_in_order ON reactions (room, target_seq, emoji, seq);
	CREATE INDEX reactions_by_user ON reactions (room, user, target_seq);
	CREATE TABLE reaction_counts (
		room       TEXT NOT NULL,
		target_seq INTEGER NOT NULL,
		emoji      TEXT NOT NULL,
		count      INTEGER NOT NULL,
		first_seq  INTEGER NOT NULL,
		users      TEXT NOT NULL,
		PRIMARY KEY (room, target_seq, emoji)
	) WITHOUT ROWID;`,
	// Read state (issue 17; see sqlstore/readstate.go): each entry's
	// mentions (a JSON array, '' for none) and ord (the room's messages up
	// to it), each message's sord (its sender's messages in the room up
	// to it); the room's message count and the ord retention pruned up
	// to; per sender their messages; the current mentions by user; read
	// markers; and the deleted messages, which the counts subtract. The
	// entries already stored get their ordinals and counts here, in one
	// pass over the log (the only migration so far that rewrites every
	// row).
	`ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN ord INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE messages ADD COLUMN sord INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE rooms ADD COLUMN msgs INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE rooms ADD COLUMN pruned_ord INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE room_senders (
		room     TEXT NOT NULL,
		sender   TEXT NOT NULL,
		msgs     INTEGER NOT NULL, -- messages ever appended
		last_seq INTEGER NOT NULL, -- the newest of them
		pruned   INTEGER NOT NULL DEFAULT 0, -- of them, deleted by retention
		PRIMARY KEY (room, sender)
	) WITHOUT ROWID;
	CREATE TABLE mentions (
		room TEXT NOT NULL,
		seq  INTEGER NOT NULL,
		user TEXT NOT NULL,
		PRIMARY KEY (room, seq, user)
	) WITHOUT ROWID;
	CREATE INDEX mentions_by_user ON mentions (room, user, seq);
	CREATE TABLE read_markers (
		room    TEXT NOT NULL,
		user    TEXT NOT NULL,
		seq     INTEGER NOT NULL,
		ord     INTEGER NOT NULL, -- the room's messages up to seq
		own     INTEGER NOT NULL, -- of them, the user's
		read_at INTEGER NOT NULL, -- unix nanoseconds
		PRIMARY KEY (room, user)
	) WITHOUT ROWID;
	CREATE INDEX messages_deleted ON messages (room, seq, sender) WHERE deleted = 1;
	UPDATE messages SET ord = o.ord, sord = o.sord
		FROM (SELECT room, seq, sum(kind = 0) OVER (PARTITION BY room ORDER BY seq) AS ord,
			CASE WHEN kind = 0 THEN row_number() OVER (PARTITION BY room, sender, kind ORDER BY seq) ELSE 0 END AS sord FROM messages) AS o
		WHERE messages.room = o.room AND messages.seq = o.seq;
	UPDATE rooms SET msgs = c.n
		FROM (SELECT room, count(*) AS n FROM messages WHERE kind = 0 GROUP BY room) AS c
		WHERE rooms.name = c.room;
	INSERT INTO room_senders (room, sender, msgs, last_seq)
		SELECT room, sender, count(*), max(seq) FROM messages WHERE kind = 0 GROUP BY room, sender;`,
	// The senders' counts are written lazily (senders.go): uncounted_from
	// is the first seq of the room that room_senders does not count yet,
	// 0 if it counts every message, as the previous version left them all.
	`ALTER TABLE rooms ADD COLUMN uncounted_from INTEGER NOT NULL DEFAULT 0;`,
	// The texts of messages and edits written from here on live in bodies,
	// a rowid table only ever appended to at its end, and messages.body_id
	// names the row (0: the text is in messages.body, as older rows have
	// it, or erased). A delete overwrites the text in place with as many
	// zero bytes, so its cell neither moves nor frees space, and no page
	// of the table is ever split or merged around a text: in the log's
	// own table, keyed by (room, seq), every split rebuilt a page from
	// its cells and left old copies of the moved rows in its unused
	// space, where secure_delete does not reach, so a deleted text could
	// stay in the file (TestDeleteErasesAfterPageSplits).
	`CREATE TABLE bodies (
		id   INTEGER PRIMARY KEY,
		body TEXT NOT NULL
	);
	ALTER TABLE messages ADD COLUMN body_id INTEGER NOT NULL DEFAULT 0;`,
}

// migrate applies the migrations the database has not seen, each in its
// own transaction together with the bump of PRAGMA user_version.
func migrate(ctx context.Context, db *sql.DB) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("sqlite: database schema version %d is newer than this binary knows (%d)", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if err := applyMigration(ctx, db, v); err != nil {
			return fmt.Errorf("sqlite: migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, v int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return err
	}
	return tx.Commit()
}

// Close finishes the appends already queued, stops the writer and closes
// the database. Calls after Close return store.ErrClosed; a second Close
// returns nil.
func (s *Store) Close() error {
	return s.gate.Close(func() error { return errors.Join(s.w.close(), s.closeDBs()) })
}

func (s *Store) closeDBs() error {
	var errs []error
	if err := s.reads.close(); err != nil {
		errs = append(errs, fmt.Errorf("sqlite: close: %w", err))
	}
	for _, db := range []*sql.DB{s.read, s.write} {
		if db != nil {
			if err := db.Close(); err != nil {
				errs = append(errs, fmt.Errorf("sqlite: close: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// exit ends a call that s.gate.Enter admitted, marking in *err a damaged
// database or full storage (see classify).
func (s *Store) exit(err *error) {
	s.gate.Exit()
	*err = classify(s.cfg.Path, *err)
}
