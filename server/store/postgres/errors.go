package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable marks an error that says PostgreSQL is out of reach or not
// answering in time (connection refused or lost, a timeout, the server
// shutting down or out of connections), as opposed to an error in what was
// asked. Retrying later may succeed; for an append, retrying with the same
// ClientMsgID is safe even if the failed attempt was in fact stored (a
// COMMIT whose answer was lost).
var ErrUnavailable = errors.New("postgres unavailable")

// classify wraps err with ErrUnavailable if it says the server is out of
// reach; other errors come back unchanged.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !unavailable(err) {
		return err
	}
	return mark(err, ErrUnavailable)
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
