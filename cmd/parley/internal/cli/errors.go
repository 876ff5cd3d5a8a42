package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"google.golang.org/grpc/status"
)

// Exit statuses of the parley command.
const (
	ExitOK    = 0
	ExitFail  = 1 // a call failed, or a benchmark found a problem
	ExitUsage = 2
)

// ErrFailed marks an error already reported in full (a benchmark whose
// report shows what went wrong): it only sets the exit status.
var ErrFailed = errors.New("failed")

// ErrFlagParse marks a flag error the flag package has already printed.
var ErrFlagParse = errors.New("bad flags")

// UsageError is a mistake on the command line; it exits with ExitUsage.
type UsageError struct{ Msg string }

func (u UsageError) Error() string { return u.Msg }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

// Exit prints err of the command name, if any, on stderr and turns it into
// an exit status.
func Exit(stderr io.Writer, name string, err error) int {
	var ue UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, ErrFailed):
		return ExitFail
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "parley %s: %s (see parley %s --help)\n", name, ue.Msg, name)
		return ExitUsage
	case errors.Is(err, ErrFlagParse):
		return ExitUsage // the flag package has printed the problem and the usage
	}
	fmt.Fprintf(stderr, "parley %s: %s\n", name, Describe(err))
	return ExitFail
}

// Describe turns an error into the line printed for it: a gRPC status shows
// its code and the server's message.
func Describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}
