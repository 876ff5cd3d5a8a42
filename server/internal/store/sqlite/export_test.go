package sqlite

import (
	"context"
	"database/sql"
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
