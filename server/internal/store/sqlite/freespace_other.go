//go:build !(linux || darwin || freebsd)

package sqlite

// freeBytes cannot tell free space on this system.
func freeBytes(string) (uint64, bool) { return 0, false }
