// Command parley is Parley's command-line client: an interactive terminal
// chat, scriptable commands for rooms, history, sending, editing, deleting
// and reacting, and dev tokens, and
// a load generator that measures a running server (bench and soak, in
// package internal/load). The flags and dialing every command shares are
// in package internal/cli.
//
//	parley [global flags] <command> [flags] [args]
//
// Global flags (--addr, --token, TLS) may also follow the command name.
// The token comes from --token or PARLEY_TOKEN, the address from --addr or
// PARLEY_ADDR. Exit status: 0 on success, 1 when a call fails (the gRPC
// status is printed) or a benchmark finds loss, duplicates or reordering,
// 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	"github.com/parleychat/parley/cmd/parley/internal/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand: its name, a one-line summary, and its runner,
// which parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *cli.Env, args []string) error
}

func commands() []command {
	return []command{
		{"chat", "interactive chat in one or more rooms", runChat},
		{"rooms", "list the rooms you can see", runRooms},
		{"history", "print a room's stored messages", runHistory},
		{"send", "send one message to a room", runSend},
		{"edit", "edit one of your messages", runEntry("edit")},
		{"delete", "delete a message", runEntry("delete")},
		{"react", "react to a message with an emoji", runEntry("react")},
		{"unreact", "take a reaction back", runEntry("unreact")},
		{"create", "create a room", runCreate},
		{"token", "get a token for a user from a --dev server", runToken},
		{"bench", "load-test a running server: fan-out, latency, loss", load.Bench},
		{"soak", "churn a running server and check its guarantees and leaks", load.Soak},
	}
}

// runEntry is the runner of the entryCommand called name.
func runEntry(name string) func(ctx context.Context, e *cli.Env, args []string) error {
	for _, ec := range entryCommands() {
		if ec.name == name {
			return ec.run
		}
	}
	panic("parley: no entry command " + name)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &cli.Env{Globals: cli.NewGlobals(), Stdin: stdin, Stdout: stdout, Stderr: stderr}
	top := flag.NewFlagSet("parley", flag.ContinueOnError)
	top.SetOutput(stderr)
	e.Globals.Register(top)
	top.Usage = func() { topUsage(top) }
	if err := top.Parse(args); err != nil {
		return usageStatus(err)
	}
	if top.NArg() == 0 {
		topUsage(top)
		return cli.ExitUsage
	}
	name, rest := top.Arg(0), top.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			topUsage(top)
			return cli.ExitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	for _, c := range commands() {
		if c.name == name {
			return cli.Exit(stderr, name, c.run(ctx, e, rest))
		}
	}
	fmt.Fprintf(stderr, "parley: unknown command %q\n\n", name)
	topUsage(top)
	return cli.ExitUsage
}

func topUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, "parley: the Parley chat client.\n\nUsage:\n  parley [global flags] <command> [flags] [args]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'parley <command> --help' for a command's flags.\n\nGlobal flags (also accepted after the command):\n")
	fs.PrintDefaults()
}

func usageStatus(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitOK
	}
	return cli.ExitUsage
}
