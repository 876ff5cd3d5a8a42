package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// sideLife is how long a Subscribe or REST stream lives before the user
// cuts it: 1 to 10 s.
func sideLife(rng *rand.Rand) time.Duration {
	return time.Second + time.Duration(rng.Int64N(int64(9*time.Second)))
}

// sideStream checks the events of one Subscribe or REST stream in one room.
type sideStream struct {
	u     *soakUser
	name  string
	room  string
	after *uint64
	view  *streamView
}

func (u *soakUser) newSide(kind string, n uint64, room string, after *uint64) *sideStream {
	name := fmt.Sprintf("%s %s #%d (%s, %s)", u.name, kind, n, room, fmtAfter(after))
	return &sideStream{u: u, name: name, room: room, after: after, view: u.s.check.stream(name)}
}

// event checks one Subscribe event.
func (ss *sideStream) event(ev *parleyv1.SubscribeResponse) {
	switch e := ev.GetEvent().(type) {
	case *parleyv1.SubscribeResponse_Joined:
		start := e.Joined.GetHeadSeq()
		if ss.after != nil {
			start = *ss.after
			ss.u.s.noteReplay(e.Joined.GetRoom(), start, e.Joined.GetHeadSeq())
		} else {
			ss.u.s.heads.see(e.Joined.GetRoom(), start)
		}
		ss.view.start(e.Joined.GetRoom(), start)
	case *parleyv1.SubscribeResponse_Message:
		ss.u.s.heads.see(e.Message.GetRoom(), e.Message.GetSeq())
		ss.view.message(e.Message.GetRoom(), e.Message.GetSeq())
	}
}

// finish checks how the stream ended.
func (ss *sideStream) finish(ctx context.Context, err error) {
	last, _ := ss.view.last(ss.room)
	ss.view.stopAll()
	pos, _ := ss.u.endStatus(ctx, ss.name, err)
	ss.u.checkCutPositions(ss.name, pos, map[string]uint64{ss.room: last})
}

// subscribe opens a Subscribe stream on the user's connection, reads it
// (stopping for a while, sometimes) and cuts it after a few seconds.
func (u *soakUser) subscribe(ctx context.Context, rng *rand.Rand, api parleyv1.ChatServiceClient) {
	room, after := u.sideStart(rng)
	ss := u.newSide("subscribe", u.s.counts.subscribes.Add(1), room, after)
	ctx, cancel := context.WithTimeout(ctx, sideLife(rng))
	defer cancel()
	stream, err := api.Subscribe(cli.WithAuth(ctx, u.token), &parleyv1.SubscribeRequest{Room: room, AfterSeq: after}, grpc.WaitForReady(true))
	if err != nil {
		ss.finish(ctx, err)
		return
	}
	var pauseAt int
	if rng.IntN(3) == 0 {
		pauseAt = 1 + rng.IntN(20)
	}
	for n := 1; ; n++ {
		if n == pauseAt {
			_ = sleepCtx(ctx, time.Duration(rng.Int64N(int64(u.s.cfg.pauseMax))))
		}
		ev, err := stream.Recv()
		if err != nil {
			ss.finish(ctx, err)
			return
		}
		ss.event(ev)
	}
}

// restLine is one line of the REST gateway's NDJSON stream.
type restLine struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int          `json:"code"`
		Message string       `json:"message"`
		Details []restDetail `json:"details"`
	} `json:"error"`
}

// restDetail is an error detail in protobuf's JSON form; the soak reads
// ErrorInfo's.
type restDetail struct {
	Type     string            `json:"@type"`
	Reason   string            `json:"reason"`
	Metadata map[string]string `json:"metadata"`
}

func statusErr(c codes.Code, msg string) error { return status.Error(c, msg) }

// restStatus rebuilds the gRPC status of a REST stream's error line.
func restStatus(code int, msg string, details []restDetail) error {
	st := status.New(codes.Code(code), msg)
	for _, d := range details {
		if d.Reason == "" {
			continue
		}
		if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: d.Reason, Metadata: d.Metadata}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

var errRESTStatus = errors.New("REST event stream refused")

// restEvents follows GET /v1/rooms/{room}/events over its own HTTP/1.1
// connection and cuts it after a few seconds.
func (u *soakUser) restEvents(ctx context.Context, rng *rand.Rand, _ parleyv1.ChatServiceClient) {
	room, after := u.sideStart(rng)
	ss := u.newSide("rest", u.s.counts.rests.Add(1), room, after)
	ctx, cancel := context.WithTimeout(ctx, sideLife(rng))
	defer cancel()
	target := u.s.restURL + "/v1/rooms/" + url.PathEscape(room) + "/events"
	if after != nil {
		target += "?afterSeq=" + strconv.FormatUint(*after, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		ss.finish(ctx, err)
		return
	}
	req.Header.Set("authorization", "Bearer "+u.token)
	resp, err := u.s.rest.Do(req)
	if err != nil {
		ss.finish(ctx, restErr(ctx, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ss.finish(ctx, fmt.Errorf("%w: HTTP %d", errRESTStatus, resp.StatusCode))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		if err := ss.restLine(sc.Bytes()); err != nil {
			ss.finish(ctx, restErr(ctx, err)) // a line cut by the soak's own deadline is no error
			return
		}
	}
	err = sc.Err()
	if err == nil {
		err = fmt.Errorf("%w: the stream ended without an error line", errRESTStatus)
	}
	ss.finish(ctx, restErr(ctx, err))
}

// restErr turns a read error caused by the stream's own deadline into the
// status a gRPC stream would end with.
func restErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return statusErr(codes.DeadlineExceeded, err.Error())
	}
	return err
}

// restLine checks one NDJSON line: an event, or the error ending the
// stream (returned as a gRPC status with its slow-consumer positions).
func (ss *sideStream) restLine(line []byte) error {
	var l restLine
	if err := json.Unmarshal(line, &l); err != nil {
		return fmt.Errorf("REST event stream: bad line %.100q: %w", line, err)
	}
	if l.Error != nil {
		return restStatus(l.Error.Code, l.Error.Message, l.Error.Details)
	}
	var ev parleyv1.SubscribeResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(l.Result, &ev); err != nil {
		return fmt.Errorf("REST event stream: bad event %.100q: %w", l.Result, err)
	}
	ss.event(&ev)
	return nil
}
