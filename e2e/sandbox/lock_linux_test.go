package sandbox

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// dupFD duplicates the descriptor of f, as fork does for a child's ExtraFiles.
func dupFD(t *testing.T, f *os.File) uintptr {
	t.Helper()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return uintptr(fd)
}
