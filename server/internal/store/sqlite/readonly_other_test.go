//go:build !linux

package sqlite_test

import (
	"os"
	"testing"
)

// makeReadOnly makes dir read-only with permission bits until the test
// ends; it reports false if it cannot.
func makeReadOnly(t *testing.T, dir string) bool {
	if err := os.Chmod(dir, 0o555); err != nil {
		return false
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	return true
}
