package main

import (
	"os"
	"strings"
	"testing"
)

// The README's commands follow the one address chosen in its quick start:
// no shell command names the default port itself, so a reader whose port
// 8080 is taken changes one line.
func TestReadmeCommandsUseOneAddress(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inShell, exports := false, 0
	for i, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inShell = line == "```sh"
		case !inShell:
		case strings.HasPrefix(line, "export PARLEY_ADDR="):
			exports++
		case strings.Contains(line, "127.0.0.1:8080"), strings.Contains(line, "localhost:8080"):
			t.Errorf("README.md:%d names the default address instead of $PARLEY_ADDR: %s", i+1, line)
		}
	}
	if exports != 1 {
		t.Errorf("README.md sets PARLEY_ADDR in %d shell blocks; want exactly one, in the quick start", exports)
	}
}
