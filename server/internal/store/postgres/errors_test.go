package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/server/internal/store"
)

// TestClassifyStorageFaults: PostgreSQL's disk-full and corruption states
// become store.ErrFull and store.ErrCorrupt, keeping their text.
func TestClassifyStorageFaults(t *testing.T) {
	tests := []struct {
		code string
		want error // nil: none of the sentinels
	}{
		{"53100", store.ErrFull},
		{"XX001", store.ErrCorrupt},
		{"XX002", store.ErrCorrupt},
		{"08006", store.ErrUnavailable},
		{"23505", nil},
	}
	for _, tc := range tests {
		err := fmt.Errorf("postgres: append: %w", &pgconn.PgError{Code: tc.code, Message: "m"})
		got := classify(err)
		if got.Error() != err.Error() {
			t.Errorf("%s: classify changed the text to %q", tc.code, got)
		}
		for _, s := range []error{store.ErrFull, store.ErrCorrupt, store.ErrUnavailable} {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("%s: errors.Is(classify(err), %v) = %v", tc.code, s, errors.Is(got, s))
			}
		}
	}
}
