package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory until the test
// ends, or skips the test if it cannot (mounting needs root).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFullIsErrFull fills a real (tmpfs) file system: appends fail
// with store.ErrFull, whichever way SQLite meets ENOSPC, nothing
// acknowledged is lost, and appends succeed again once space is freed.
func TestDiskFullIsErrFull(t *testing.T) {
	dir := mountTmpfs(t, 4<<20)
	spare := filepath.Join(dir, "spare")
	if err := os.WriteFile(spare, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openTemp(t, sqlite.Config{Path: filepath.Join(dir, "parley.db")})
	t.Cleanup(func() { s.Close() }) // before the unmount
	acked := appendUntilFull(t, s)
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append(context.Background(), store.NewMessage{Room: "chat", Sender: "bob", Body: "after"}); err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	checkAcked(t, s, "chat", acked)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
