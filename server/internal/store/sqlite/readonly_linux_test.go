package sqlite_test

import (
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// Linux inode flags (linux/fs.h) for making a directory immutable, which
// stops even root from creating files in it.
const (
	fsIocGetFlags = 0x80086601
	fsIocSetFlags = 0x40086602
	fsImmutableFl = 0x10
)

// makeReadOnly makes dir read-only for this process until the test ends:
// with permission bits for an ordinary user, with the immutable flag for
// root (who ignores permission bits). It reports false if it cannot.
func makeReadOnly(t *testing.T, dir string) bool {
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Logf("chmod %s: %v", dir, err)
			return false
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return true
	}
	if err := setImmutable(dir, true); err != nil {
		t.Logf("set immutable flag on %s: %v", dir, err)
		return false
	}
	t.Cleanup(func() {
		if err := setImmutable(dir, false); err != nil {
			t.Errorf("clear immutable flag on %s: %v", dir, err)
		}
	})
	return true
}

func setImmutable(dir string, on bool) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var flags int32
	if err := ioctl(f.Fd(), fsIocGetFlags, &flags); err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFl
	} else {
		flags &^= fsImmutableFl
	}
	return ioctl(f.Fd(), fsIocSetFlags, &flags)
}

func ioctl(fd, req uintptr, flags *int32) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(flags))); errno != 0 {
		return errno
	}
	return nil
}
