package load

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// lastRead is user's read marker in room and the room's last seq, as
// ListRooms tells them.
func lastRead(t *testing.T, s *app.Server, user, room string) (read, last uint64) {
	t.Helper()
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok, _, err := s.Keys.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	resp, err := parleyv1.NewChatServiceClient(conn).ListRooms(ctx, &parleyv1.ListRoomsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetRooms() {
		if r.GetName() == room {
			return r.GetLastReadSeq(), r.GetLastSeq()
		}
	}
	t.Fatalf("%s does not see room %s", user, room)
	return 0, 0
}

// --mark-read-rate: the receivers mark their rooms read on their own
// streams while messages flow, with both ways of reading them; the run
// stays clean, reports the marks, and the server has the markers.
func TestBenchMarksRead(t *testing.T) {
	for _, via := range []string{"h2", "grpc"} {
		t.Run(via, func(t *testing.T) {
			s := startServer(t)
			rep, r := runBenchJSON(t, s.Addr(), "--receivers", "10", "--rooms", "2", "--senders", "2", "--rate", "200",
				"--mark-read-rate", "100", "--receive-via", via, "--warmup", "300ms", "--duration", "1s", "--quiet")
			wantCode(t, r, cli.ExitOK)
			if !rep.OK || len(rep.Errors) != 0 || rep.Lost != 0 {
				t.Fatalf("report is not clean: %+v", rep)
			}
			// Marks are paced, never sent faster than the rate: at most 100
			// in the measured second, with slack for the pacer's catching
			// up. How many fewer a busy machine manages is not this test's
			// business (a floor here failed at load average 13-20).
			if rep.Marks == 0 || rep.Marks > 150 || rep.Config.MarkReadRate != 100 {
				t.Fatalf("%d marks in the measured second at --mark-read-rate 100; want 1 to 150", rep.Marks)
			}
			if got, _ := lastRead(t, s, "bench-u0", "bench-0"); got == 0 {
				t.Fatal("receiver 0's marker was not stored")
			}
		})
	}
	s := startServer(t)
	wantCode(t, parley(t, s.Addr(), "", "bench", "--subscribe", "--mark-read-rate", "10"), cli.ExitUsage, "--mark-read-rate")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--mark-read-stale"), cli.ExitUsage, "--mark-read-stale goes with --mark-read-rate")
}

// --mark-read-stale: the receivers keep marking, but every mark repeats
// their first, so the markers stay where the first marks put them while
// the rooms go on (without it they follow the head, above).
func TestBenchMarksReadStale(t *testing.T) {
	s := startServer(t)
	rep, r := runBenchJSON(t, s.Addr(), "--receivers", "10", "--rooms", "2", "--senders", "2", "--rate", "200",
		"--mark-read-rate", "100", "--mark-read-stale", "--warmup", "300ms", "--duration", "1s", "--quiet")
	wantCode(t, r, cli.ExitOK)
	if !rep.OK || len(rep.Errors) != 0 || rep.Lost != 0 || rep.Marks < 10 {
		t.Fatalf("report is not clean, or too few marks (%d): %+v", rep.Marks, rep)
	}
	// 100 msgs/s into each room for 1.3 s; each receiver's first mark
	// comes with its first messages.
	if got, last := lastRead(t, s, "bench-u0", "bench-0"); got == 0 || got > last/2 {
		t.Fatalf("receiver 0's marker is at %d of %d after %d stale marks; want its first mark's seq, early on", got, last, rep.Marks)
	}
}
