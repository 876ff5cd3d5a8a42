package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	driver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/parleychat/parley/server/internal/store"
)

// lowSpace is the free space below which an I/O error is taken for a full
// disk: less than a few pages, which is what a write that failed with
// ENOSPC leaves.
const lowSpace = 1 << 20

// classify marks err with store.ErrCorrupt or store.ErrFull when SQLite's
// result code says that the database at path is damaged or its storage
// full; other errors come back unchanged.
//
// SQLite reports ENOSPC as SQLITE_FULL when a write to the database or its
// WAL comes up short, but as an I/O error (SQLITE_IOERR_FSYNC, _TRUNCATE,
// _SHMSIZE, ...) when another system call fails with it, and the driver
// does not expose errno; so an I/O error counts as a full disk when the
// file system has (almost) no space left.
func classify(path string, err error) error {
	var se *driver.Error
	if err == nil || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrFull) || !errors.As(err, &se) {
		return err
	}
	switch code := se.Code(); {
	case code&0xff == sqlite3.SQLITE_CORRUPT, code&0xff == sqlite3.SQLITE_NOTADB, code == sqlite3.SQLITE_IOERR_CORRUPTFS:
		return fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	case code&0xff == sqlite3.SQLITE_FULL:
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	case code&0xff == sqlite3.SQLITE_IOERR:
		if free, ok := freeBytes(filepath.Dir(path)); ok && free < lowSpace {
			return fmt.Errorf("%w (%d bytes free): %w", store.ErrFull, free, err)
		}
	}
	return err
}

// noTransaction reports whether err is ROLLBACK's answer when SQLite has
// rolled the transaction back itself, as it does after SQLITE_FULL and
// some I/O errors: nothing left to undo.
func noTransaction(err error) bool {
	var se *driver.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_ERROR && strings.Contains(se.Error(), "no transaction is active")
}
