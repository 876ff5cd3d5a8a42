package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// MigrateTo applies the schema's first n migrations to db, as an older
// binary would have left it.
func MigrateTo(ctx context.Context, db *sql.DB, n int) error {
	for v := range n {
		if err := applyMigration(ctx, db, v); err != nil {
			return err
		}
	}
	return nil
}

// WithSenderFlushAge returns cfg with the writer keeping a room's senders'
// counts in memory for at most d (negative: until too many) before it
// writes them to room_senders (senders.go).
func WithSenderFlushAge(cfg Config, d time.Duration) Config {
	cfg.senderFlushAge = d
	return cfg
}
