package sqlstore

import (
	"database/sql"
	"errors"
	"math"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/internal/store"
)

func TestSeqBounds(t *testing.T) {
	for _, tc := range []struct {
		q             store.Query
		after, before int64
	}{
		{store.Query{}, 0, math.MaxInt64},
		{store.Query{After: 3, Before: 9}, 3, 9},
		{store.Query{After: math.MaxUint64, Before: math.MaxUint64}, math.MaxInt64, math.MaxInt64},
	} {
		if after, before := SeqBounds(tc.q); after != tc.after || before != tc.before {
			t.Errorf("SeqBounds(%+v) = %d, %d; want %d, %d", tc.q, after, before, tc.after, tc.before)
		}
	}
}

// Both drivers' "no rows" mean an unknown room; other errors are the
// database's.
func TestRoomErr(t *testing.T) {
	for _, noRows := range []error{sql.ErrNoRows, pgx.ErrNoRows} {
		if err := RoomErr("db", "r", noRows); !errors.Is(err, store.ErrRoomNotFound) {
			t.Errorf("RoomErr(%v) = %v, want ErrRoomNotFound", noRows, err)
		}
	}
	broken := errors.New("broken")
	if err := RoomErr("db", "r", broken); !errors.Is(err, broken) || errors.Is(err, store.ErrRoomNotFound) || err.Error() != `db: read room "r": broken` {
		t.Errorf("RoomErr(broken) = %v", err)
	}
	if err := RoomErr("db", "r", nil); err != nil {
		t.Errorf("RoomErr(nil) = %v", err)
	}
}
