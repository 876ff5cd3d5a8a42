package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/server/internal/store"
)

// ErrInvalidText means that a message's room, sender, body or ClientMsgID
// is not valid UTF-8 or holds a NUL character (U+0000), which PostgreSQL's
// text type cannot store. Append rejects such a message on its own, before
// it can fail a batch shared with other callers' messages.
var ErrInvalidText = errors.New("text must be valid UTF-8 without NUL characters")

// classify marks err with store.ErrUnavailable if it says that PostgreSQL
// is out of reach or not answering in time (connection refused or lost, a
// timeout, the server shutting down or out of connections), as opposed to
// an error in what was asked; other errors come back unchanged.
//
// An append that fails this way usually stored nothing, but not always: if
// the connection is lost while COMMIT is under way, the batch may have been
// stored. A retry with the same ClientMsgID is safe either way (it returns
// the stored message as a duplicate).
//
// It also marks a full disk (SQLSTATE 53100) with store.ErrFull and data
// corruption (XX001, XX002) with store.ErrCorrupt.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrCorrupt) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "53100": // disk_full
			return mark(err, store.ErrFull)
		case "XX001", "XX002": // data_corrupted, index_corrupted
			return mark(err, store.ErrCorrupt)
		}
	}
	if !unavailable(err) {
		return err
	}
	return mark(err, store.ErrUnavailable)
}

// checkText reports ErrInvalidText if a field of m cannot be stored.
func checkText(m store.NewMessage) error {
	for _, f := range [...]struct{ name, s string }{
		{"room", m.Room}, {"sender", m.Sender}, {"body", m.Body}, {"client_msg_id", m.ClientMsgID}, {"emoji", m.Emoji},
	} {
		if !storable(f.s) {
			return fmt.Errorf("postgres: append to room %q: %s: %w", m.Room, f.name, ErrInvalidText)
		}
	}
	for _, u := range m.Mentions { // stored only for messages and edits, but refused for any kind
		if !storable(u) {
			return fmt.Errorf("postgres: append to room %q: mentions: %w", m.Room, ErrInvalidText)
		}
	}
	return nil
}

// storable reports whether PostgreSQL's text can hold s.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// mark returns err with the same text that also matches sentinel in
// errors.Is: the sentinels are for callers to test, not for people to read.
func mark(err, sentinel error) error {
	return marked{err, sentinel}
}

type marked struct{ err, sentinel error }

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() []error { return []error{m.err, m.sentinel} }

func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up; the server may be fine
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 53300: too many connections;
		// 57P01-57P03: shutting down or starting up; 57014: cancelled,
		// which is what statement_timeout does; 55P03: lock_timeout.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "53300" ||
			strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "57014" || pgErr.Code == "55P03"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
}

// isUniqueViolation reports whether err is a violation of the named unique
// index or constraint.
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// isForeignKeyViolation reports whether err is a violation of a foreign key.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
