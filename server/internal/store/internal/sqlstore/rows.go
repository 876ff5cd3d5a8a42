package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/parleychat/parley/server/internal/store"
)

// Row is one row of a result: *sql.Row, *sql.Rows, pgx.Row and pgx.Rows
// all are.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result of many rows: *sql.Rows and pgx.Rows both are.
type Rows interface {
	Row
	Next() bool
	Err() error
}

// Collect appends scan's value of each row to out and returns out, or the
// first error. The caller closes rows.
func Collect[T any](rows Rows, out []T, scan func(Row) (T, error)) ([]T, error) {
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ScanString scans a row of one text column.
func ScanString(row Row) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}

// RoomErr gives err, from reading the row of room, its meaning: no row is
// store.ErrRoomNotFound; any other error is the database's, prefixed with
// the store's name. (pgx.ErrNoRows is sql.ErrNoRows too.)
func RoomErr(storeName, room string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("room %q: %w", room, store.ErrRoomNotFound)
	}
	return fmt.Errorf("%s: read room %q: %w", storeName, room, err)
}

// ClampSeq maps a seq bound onto SQL's signed 64-bit integers; no stored
// seq comes near the top of the range.
func ClampSeq(seq uint64) int64 {
	return int64(min(seq, math.MaxInt64))
}

// SeqBounds returns q's exclusive seq bounds as SQL integers: a zero
// Before is no bound.
func SeqBounds(q store.Query) (after, before int64) {
	after, before = ClampSeq(q.After), math.MaxInt64
	if q.Before != 0 {
		before = ClampSeq(q.Before)
	}
	return after, before
}
