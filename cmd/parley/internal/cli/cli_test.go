package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Flags may come between positional arguments; "--" ends them.
func TestParseFlags(t *testing.T) {
	cases := []struct {
		args     []string
		wantPos  []string
		wantJSON bool
	}{
		{[]string{"lobby", "hi"}, []string{"lobby", "hi"}, false},
		{[]string{"lobby", "--json", "hi"}, []string{"lobby", "hi"}, true},
		{[]string{"--json", "lobby", "--", "--json"}, []string{"lobby", "--json"}, true},
		{nil, nil, false},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		asJSON := fs.Bool("json", false, "")
		pos, err := ParseFlags(fs, c.args)
		if err != nil || !slices.Equal(pos, c.wantPos) || *asJSON != c.wantJSON {
			t.Errorf("ParseFlags(%q) = %q, json %v, %v; want %q, json %v", c.args, pos, *asJSON, err, c.wantPos, c.wantJSON)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := ParseFlags(fs, []string{"--nope"}); !errors.Is(err, ErrFlagParse) {
		t.Errorf("unknown flag: %v, want ErrFlagParse", err)
	}
	if _, err := ParseFlags(fs, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
}

// Each kind of error has its exit status and its line on stderr.
func TestExit(t *testing.T) {
	cases := []struct {
		err        error
		code       int
		wantStderr string
	}{
		{nil, ExitOK, ""},
		{flag.ErrHelp, ExitOK, ""},
		{fmt.Errorf("bench: %w", ErrFailed), ExitFail, ""},
		{ErrFlagParse, ExitUsage, ""},
		{Usagef("give %d room", 1), ExitUsage, "parley send: give 1 room (see parley send --help)\n"},
		{status.Error(codes.NotFound, `room "x" does not exist`), ExitFail, "parley send: NotFound: room \"x\" does not exist\n"},
		{errors.New("connect: refused"), ExitFail, "parley send: connect: refused\n"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		if code := Exit(&stderr, "send", c.err); code != c.code || stderr.String() != c.wantStderr {
			t.Errorf("Exit(%v) = %d, stderr %q; want %d, %q", c.err, code, stderr.String(), c.code, c.wantStderr)
		}
	}
}
