package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// ParseFlags parses args with fs, allowing flags between positional
// arguments ("send lobby --json hi"); "--" ends the flags. It returns the
// positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, ErrFlagParse
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first non-flag argument, or just after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// NewFlagSet returns a flag set for a subcommand with the global flags
// registered and a usage text of synopsis and description.
func NewFlagSet(e *Env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	e.Globals.Register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: parley %s\n\n%s\n\nFlags:\n", synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}
