package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are the schema's versions: migrations[i] takes a schema from
// version i to i+1, recorded in schema_migrations. Append new steps; never
// edit a released one. The tables are those of the SQLite store, in
// PostgreSQL's types, with three differences: times are timestamptz
// (microseconds) and last_message_at is NULL for an empty room; names and
// ids sort and compare byte by byte (COLLATE "C": SQLite's and Go's order
// whatever the database's locale, and the cheapest collation to index);
// messages has no foreign key (see below). members keeps SQLite's column
// name "user", which PostgreSQL reserves: quote it ("user"), or a bare user
// in a query means CURRENT_USER.
var migrations = []string{
	`CREATE TABLE rooms (
		name            text COLLATE "C" PRIMARY KEY,
		visibility      integer NOT NULL,
		created_by      text NOT NULL,
		created_at      timestamptz NOT NULL,
		-- The room's order: the writer reads and bumps it with the row
		-- locked, in the transaction that stores the messages.
		last_seq        bigint NOT NULL DEFAULT 0,
		last_message_at timestamptz
	);
	-- No foreign key to rooms: the writer inserts a room's messages only in
	-- the statement that locked and moved that room's head, and rooms are
	-- never deleted, so it could never fire; its check took 4-9 ms of a
	-- 1,000-message batch's ~15 ms (docs/performance.md).
	CREATE TABLE messages (
		room          text COLLATE "C" NOT NULL,
		seq           bigint NOT NULL,
		sender        text COLLATE "C" NOT NULL,
		body          text NOT NULL,
		sent_at       timestamptz NOT NULL,
		client_msg_id text COLLATE "C" NOT NULL DEFAULT '',
		PRIMARY KEY (room, seq)
	);
	-- Unique per (room, sender, client_msg_id); client_msg_id before sender
	-- so that time-ordered ids append at the tail of each room's range.
	CREATE UNIQUE INDEX messages_client_msg_id ON messages (room, client_msg_id, sender)
		WHERE client_msg_id <> '';`,
	// Members of private and direct rooms.
	`CREATE TABLE members (
		room   text COLLATE "C" NOT NULL REFERENCES rooms (name),
		"user" text COLLATE "C" NOT NULL,
		PRIMARY KEY (room, "user")
	);
	CREATE INDEX members_by_user ON members ("user", room);`,
	// Entries of every kind (store.Kind) in the log, and what History
	// reads kept up to date by the writer (entries.go). Columns added with
	// constant defaults rewrite no row: old rows read as messages never
	// edited or deleted.
	`ALTER TABLE messages
		ADD COLUMN kind smallint NOT NULL DEFAULT 0,
		ADD COLUMN target_seq bigint NOT NULL DEFAULT 0,
		ADD COLUMN reply_to_seq bigint NOT NULL DEFAULT 0,
		ADD COLUMN emoji text COLLATE "C" NOT NULL DEFAULT '',
		ADD COLUMN edit_seq bigint NOT NULL DEFAULT 0,
		ADD COLUMN deleted boolean NOT NULL DEFAULT false;
	CREATE INDEX messages_by_target ON messages (room, target_seq) WHERE target_seq <> 0;
	CREATE TABLE reactions (
		room       text COLLATE "C" NOT NULL,
		target_seq bigint NOT NULL,
		emoji      text COLLATE "C" NOT NULL,
		"user"     text COLLATE "C" NOT NULL,
		seq        bigint NOT NULL, -- the reaction_add entry
		PRIMARY KEY (room, target_seq, emoji, "user")
	);
	CREATE INDEX reactions_in_order ON reactions (room, target_seq, emoji, seq);
	CREATE INDEX reactions_by_user ON reactions (room, "user", target_seq);
	CREATE TABLE reaction_counts (
		room       text COLLATE "C" NOT NULL,
		target_seq bigint NOT NULL,
		emoji      text COLLATE "C" NOT NULL,
		count      bigint NOT NULL,
		first_seq  bigint NOT NULL,
		users      text[] NOT NULL, -- the first store.ReactionUsers, oldest first
		PRIMARY KEY (room, target_seq, emoji)
	);`,
	// Read state (issue 17), as in the SQLite store (see
	// sqlstore/readstate.go): each entry's mentions (a JSON array, '' for
	// none) and ord (the room's messages up to it), each message's sord
	// (its sender's messages in the room up to it); the room's message
	// count and the ord retention pruned up to; messages per sender; the
	// current mentions by user; read markers; the deleted messages. The
	// entries already stored get their ordinals and counts here, in one
	// pass (which rewrites every row of messages once).
	`ALTER TABLE messages
		ADD COLUMN mentions text NOT NULL DEFAULT '',
		ADD COLUMN ord bigint NOT NULL DEFAULT 0,
		ADD COLUMN sord bigint NOT NULL DEFAULT 0;
	ALTER TABLE rooms
		ADD COLUMN msgs bigint NOT NULL DEFAULT 0,
		ADD COLUMN pruned_ord bigint NOT NULL DEFAULT 0;
	CREATE TABLE room_senders (
		room     text COLLATE "C" NOT NULL,
		sender   text COLLATE "C" NOT NULL,
		msgs     bigint NOT NULL, -- messages ever appended
		last_seq bigint NOT NULL, -- the newest of them
		pruned   bigint NOT NULL DEFAULT 0, -- of them, deleted by retention
		PRIMARY KEY (room, sender)
	);
	CREATE TABLE mentions (
		room   text COLLATE "C" NOT NULL,
		seq    bigint NOT NULL,
		"user" text COLLATE "C" NOT NULL,
		PRIMARY KEY (room, seq, "user")
	);
	CREATE INDEX mentions_by_user ON mentions (room, "user", seq);
	CREATE TABLE read_markers (
		room    text COLLATE "C" NOT NULL,
		"user"  text COLLATE "C" NOT NULL,
		seq     bigint NOT NULL,
		ord     bigint NOT NULL, -- the room's messages up to seq
		own     bigint NOT NULL, -- of them, the user's
		read_at timestamptz NOT NULL,
		PRIMARY KEY (room, "user")
	);
	CREATE INDEX messages_deleted ON messages (room, seq) INCLUDE (sender) WHERE deleted;
	UPDATE messages m SET ord = o.ord, sord = o.sord
		FROM (SELECT room, seq, count(*) FILTER (WHERE kind = 0) OVER (PARTITION BY room ORDER BY seq) AS ord,
			CASE WHEN kind = 0 THEN row_number() OVER (PARTITION BY room, sender, kind ORDER BY seq) ELSE 0 END AS sord
			FROM messages) AS o
		WHERE m.room = o.room AND m.seq = o.seq AND o.ord <> 0;
	UPDATE rooms r SET msgs = c.n
		FROM (SELECT room, count(*) AS n FROM messages WHERE kind = 0 GROUP BY room) AS c
		WHERE r.name = c.room;
	INSERT INTO room_senders (room, sender, msgs, last_seq)
		SELECT room, sender, count(*), max(seq) FROM messages WHERE kind = 0 GROUP BY room, sender;`,
}

// migrationLockClass is the first key of the advisory lock that serialises
// migrations ("parl"); the second is the hash of the schema name, so that
// different schemas migrate independently.
const migrationLockClass = 0x7061726c

// migrate creates the schema if it is missing and applies the migrations it
// has not seen, each in its own transaction with its schema_migrations row.
// It holds a session advisory lock meanwhile, so that nodes starting at
// once migrate one after the other (the later ones find nothing to do); the
// lock goes with the connection if this process dies.
//
// It uses a connection of its own without statement_timeout: a migration of
// a large table may take long, and waiting for another node's migration is
// bounded by ctx.
func migrate(ctx context.Context, cc *pgx.ConnConfig, schema string) error {
	cc = cc.Copy()
	cc.RuntimeParams["statement_timeout"] = "0"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", classify(err))
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", migrationLockClass, schema); err != nil {
		return fmt.Errorf("postgres: wait for the migration lock of schema %q: %w", schema, classify(err))
	}
	// Unlocked explicitly so the lock is gone before Open returns; closing
	// the connection would release it too.
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1, hashtext($2))", migrationLockClass, schema) //nolint:errcheck
	version, err := schemaVersion(ctx, conn, schema)
	if err != nil {
		return fmt.Errorf("postgres: read the schema version of %q: %w", schema, classify(err))
	}
	if version > len(migrations) {
		return fmt.Errorf("postgres: schema %q is at version %d, newer than this binary knows (%d)", schema, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if err := applyMigration(ctx, conn, v); err != nil {
			return fmt.Errorf("postgres: migrate schema %q to version %d: %w", schema, v+1, classify(err))
		}
	}
	return nil
}

// schemaVersion creates the schema and schema_migrations if they are
// missing and returns the newest version applied (0 for none).
func schemaVersion(ctx context.Context, conn *pgx.Conn, schema string) (int, error) {
	// schema is a plain identifier (Config.Validate); quoting it keeps it so.
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, "SELECT set_config('search_path', $1, false)", ident); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return 0, err
	}
	var version int
	err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version)
	return version, err
}

func applyMigration(ctx context.Context, conn *pgx.Conn, v int) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v+1)
		return err
	})
}
