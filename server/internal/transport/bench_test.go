package transport

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// streamServer is a minimal server-streaming service: it sends n copies of
// one message on every stream, like a room fanning out to its subscribers.
type streamServer struct{ n int }

var benchDesc = grpc.ServiceDesc{
	ServiceName: "bench.Fanout",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Stream", ServerStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			var req healthpb.HealthCheckRequest
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			msg := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
			for range srv.(*streamServer).n {
				if err := ss.SendMsg(msg); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

// BenchmarkServePath compares the two ways of serving native gRPC that
// DESIGN.md weighs: grpc-go's own transport behind the preface-splitting
// listener (what parleyd does on its cleartext port), and net/http's HTTP/2
// calling grpc.Server.ServeHTTP (what a single http.Server would do).
// Each op is one message delivered on one of 100 concurrent streams.
func BenchmarkServePath(b *testing.B) {
	for _, path := range []string{"split-native", "servehttp"} {
		b.Run(path, func(b *testing.B) {
			const streams = 100
			per := max(b.N/streams, 1)
			gs := grpc.NewServer()
			gs.RegisterService(&benchDesc, &streamServer{n: per})
			healthpb.RegisterHealthServer(gs, health.NewServer())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var stop func()
			switch path {
			case "split-native":
				split := newSplitListener(ln, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
				go split.run()
				go gs.Serve(split.grpc)
				stop = func() { gs.Stop(); ln.Close() }
			case "servehttp":
				hs := &http.Server{Handler: gs}
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				hs.Protocols = &p
				go hs.Serve(ln)
				stop = func() { hs.Close(); gs.Stop() }
			}
			defer stop()
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := conn.NewStream(context.Background(), &benchDesc.Streams[0], "/bench.Fanout/Stream")
					if err != nil {
						b.Error(err)
						return
					}
					if err := s.SendMsg(&healthpb.HealthCheckRequest{}); err != nil {
						b.Error(err)
						return
					}
					s.CloseSend()
					var m healthpb.HealthCheckResponse
					for i := 0; i < per; i++ {
						if err := s.RecvMsg(&m); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
