package transport

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/grpclog"
)

// grpc-go and the grpc-web wrapper log through grpclog, whose default
// logger writes plain-text "ERROR:" lines to stderr beside parleyd's
// structured log. This package routes grpclog into the log of the last
// Server started: grpc-go's info and warnings (discarded by its default
// logger) at debug, its errors at error, except the wrapper's complaints
// about one client's WebSocket, such as one that closes before its header
// frame: a client going away is not a server error, so those go at debug.
//
// grpclog's logger is process-wide and may only be set before gRPC runs,
// hence init; the logger it writes to can change at any time.

var grpcLogTo atomic.Pointer[slog.Logger]

func init() {
	grpclog.SetLoggerV2(grpcLog{})
}

// routeGRPCLog sends grpclog's lines to log from now on.
func routeGRPCLog(log *slog.Logger) {
	grpcLogTo.Store(log)
}

// clientWebsocketFailures are the starts of the grpc-web wrapper's error
// lines about a WebSocket that never became a call (wrapper.go,
// HandleGrpcWebsocketRequest): the client closed it or sent nonsense.
var clientWebsocketFailures = []string{
	"Unable to upgrade websocket request",
	"Unable to read first websocket message",
	"First websocket message is non-binary",
	"Unable to parse websocket headers",
	"web socket text format requests not yet supported",
}

// grpcLog is grpclog.LoggerV2 over slog.
type grpcLog struct{}

func (grpcLog) emit(level slog.Level, msg string) {
	log := grpcLogTo.Load()
	if log == nil {
		log = slog.Default()
	}
	if level >= slog.LevelError {
		for _, prefix := range clientWebsocketFailures {
			if strings.HasPrefix(msg, prefix) {
				log.Debug("grpc-web: a WebSocket ended before its call started", "detail", msg)
				return
			}
		}
	}
	ctx := context.Background()
	if log.Enabled(ctx, level) {
		log.Log(ctx, level, msg, "from", "grpclog")
	}
}

// The LoggerV2 methods: grpc-go's info and warnings at debug, errors at error.

func (l grpcLog) Info(a ...any)               { l.emit(debug, fmt.Sprint(a...)) }
func (l grpcLog) Infoln(a ...any)             { l.emit(debug, sprintln(a)) }
func (l grpcLog) Infof(f string, a ...any)    { l.emit(debug, fmt.Sprintf(f, a...)) }
func (l grpcLog) Warning(a ...any)            { l.emit(debug, fmt.Sprint(a...)) }
func (l grpcLog) Warningln(a ...any)          { l.emit(debug, sprintln(a)) }
func (l grpcLog) Warningf(f string, a ...any) { l.emit(debug, fmt.Sprintf(f, a...)) }
func (l grpcLog) Error(a ...any)              { l.emit(slog.LevelError, fmt.Sprint(a...)) }
func (l grpcLog) Errorln(a ...any)            { l.emit(slog.LevelError, sprintln(a)) }
func (l grpcLog) Errorf(f string, a ...any)   { l.emit(slog.LevelError, fmt.Sprintf(f, a...)) }
func (l grpcLog) Fatal(a ...any)              { l.fatal(fmt.Sprint(a...)) }
func (l grpcLog) Fatalln(a ...any)            { l.fatal(sprintln(a)) }
func (l grpcLog) Fatalf(f string, a ...any)   { l.fatal(fmt.Sprintf(f, a...)) }

const debug = slog.LevelDebug

// V reports whether verbose level v is logged: as grpc-go's default, only 0.
func (grpcLog) V(v int) bool { return v <= 0 }

// fatal logs and exits, as grpclog.LoggerV2 requires.
func (l grpcLog) fatal(msg string) {
	l.emit(slog.LevelError, msg)
	os.Exit(1)
}

func sprintln(args []any) string {
	return strings.TrimSuffix(fmt.Sprintln(args...), "\n")
}
