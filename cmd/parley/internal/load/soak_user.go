package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Each soak user's connection has small receive buffers, so that a user
// who stops reading fills the server's queue for it soon rather than the
// kernel's and HTTP/2's buffers first: the smallest flow-control windows
// grpc-go accepts (64 KiB; fixed, so BDP probing stays off) and a small
// socket receive buffer.
const (
	soakWindow  = 64 << 10
	soakSockBuf = 32 << 10
)

// soakUser is one user: one connection, one Join stream at a time, and at
// most one Subscribe and one REST event stream beside it. Its action
// goroutine (run) owns the fields not marked otherwise.
type soakUser struct {
	s      *soak
	id     int
	name   string
	token  string
	rng    *rand.Rand
	conn   *grpc.ClientConn
	api    parleyv1.ChatServiceClient
	ledger *idLedger

	want     []string // rooms the Join stream is in or joining
	js       *joinSession
	session  int // Join streams opened
	nextID   int
	side     sync.WaitGroup
	subBusy  atomic.Bool
	restBusy atomic.Bool

	tcpMu  sync.Mutex
	tcp    *vanishingConn     // the connection's newest TCP connection
	ghosts []*grpc.ClientConn // connections whose peer vanished, closed at the end

	mu      sync.Mutex              // guards cursor and unacked (shared with readers)
	cursor  map[string]uint64       // per room, the last seq the user processed
	unacked map[string]*soakPending // by client_msg_id: sends without an OK reply
}

// soakPending is a send waiting for its OK reply; resent with the same id
// on the next stream if its stream ends first.
type soakPending struct{ room, body string }

func newSoakUser(s *soak, id int, name, token string) *soakUser {
	return &soakUser{s: s, id: id, name: name, token: token, rng: rand.New(rand.NewPCG(s.cfg.seed, uint64(id))),
		ledger: newIDLedger(s.check), cursor: make(map[string]uint64), unacked: make(map[string]*soakPending)}
}

// dialTCP is the connection's dialer: it keeps the TCP connection so that
// the user can drop it, or vanish from it.
func (u *soakUser) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(soakSockBuf)
	}
	vc := &vanishingConn{Conn: nc, closed: make(chan struct{})}
	u.tcpMu.Lock()
	u.tcp = vc
	u.tcpMu.Unlock()
	return vc, nil
}

// dial opens the user's connection.
func (u *soakUser) dial() error {
	conn, err := u.s.e.Globals.Dial(grpc.WithContextDialer(u.dialTCP),
		grpc.WithInitialWindowSize(soakWindow), grpc.WithInitialConnWindowSize(soakWindow))
	if err != nil {
		return err
	}
	u.conn, u.api = conn, parleyv1.NewChatServiceClient(conn)
	return nil
}

// vanishingConn is a TCP connection whose client can vanish: from then on
// nothing is read and what is written goes nowhere, as if the phone had
// lost coverage, and the server learns of it only from its keepalive or
// its queues, until the connection is closed.
type vanishingConn struct {
	net.Conn
	gone   atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (c *vanishingConn) Read(b []byte) (int, error) {
	if !c.gone.Load() {
		n, err := c.Conn.Read(b)
		if !c.gone.Load() {
			return n, err
		}
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *vanishingConn) Write(b []byte) (int, error) {
	if c.gone.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *vanishingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// run acts until ctx ends: every --every on average, one action.
func (u *soakUser) run(ctx context.Context) {
	if err := u.dial(); err != nil {
		u.s.check.violation(violStream, "%s: connect: %v", u.name, err)
		return
	}
	u.want = u.s.pickRooms(u.rng, u.s.cfg.roomsPerUser)
	for ctx.Err() == nil {
		if u.js == nil || u.js.ended() {
			u.openSession(ctx)
		}
		wait := time.Duration(u.rng.ExpFloat64() * float64(u.s.cfg.every))
		if sleepCtx(ctx, min(wait, 5*u.s.cfg.every)) != nil {
			return
		}
		if u.js != nil && !u.js.ended() {
			u.act(ctx)
		}
	}
}

// close ends the user's streams and connection and waits for their readers.
func (u *soakUser) close() {
	if u.js != nil {
		u.js.stop()
	}
	u.side.Wait()
	if u.conn != nil {
		u.conn.Close()
	}
	for _, g := range u.ghosts {
		g.Close()
	}
}

// act does one thing, chosen at random.
func (u *soakUser) act(ctx context.Context) {
	c := &u.s.counts
	switch p := u.rng.IntN(100); {
	case p < 55:
		u.send()
	case p < 65:
		c.typing.Add(1)
		room := u.want[u.rng.IntN(len(u.want))]
		_ = u.js.request(soakRef{kind: refTyping, room: room},
			&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Typing{Typing: &parleyv1.JoinRequest_SetTyping{Room: room, Active: u.rng.IntN(2) == 0}}})
	case p < 73:
		u.switchRoom()
	case p < 77:
		c.resumes.Add(1)
		u.js.stop()
		u.openSession(ctx)
	case p < 78:
		u.dropTCP()
	case p < 79:
		u.vanish(ctx)
	case p < 84:
		c.pauses.Add(1)
		d := time.Duration(u.rng.Int64N(int64(u.s.cfg.pauseMax)))
		u.js.pauseUntil.Store(time.Now().Add(d).UnixNano())
	case p < 92:
		u.startSide(ctx, &u.subBusy, u.subscribe)
	default:
		u.startSide(ctx, &u.restBusy, u.restEvents)
	}
}

// send sends one message to one of the user's rooms; one in twenty is sent
// twice with the same client_msg_id, as a client retrying would.
func (u *soakUser) send() {
	room := u.want[u.rng.IntN(len(u.want))]
	u.nextID++
	id := u.name + "-" + strconv.Itoa(u.nextID)
	body := soakBody(u.rng, u.s.cfg.size)
	u.mu.Lock()
	u.unacked[id] = &soakPending{room: room, body: body}
	u.mu.Unlock()
	retry := u.rng.IntN(20) == 0
	if retry {
		u.ledger.watch(room, id)
	}
	u.s.counts.sends.Add(1)
	if u.js.sendPost(room, body, id) != nil || !retry {
		return
	}
	u.s.counts.retries.Add(1)
	_ = u.js.sendPost(room, body, id)
}

// soakBody is a body of 16 to size bytes.
func soakBody(rng *rand.Rand, size int) string {
	const pad = "the quick brown fox jumps over the lazy dog "
	n := 16 + rng.IntN(size-15)
	var b strings.Builder
	b.Grow(n)
	for b.Len() < n {
		b.WriteString(pad[:min(len(pad), n-b.Len())])
	}
	return b.String()
}

// switchRoom leaves one room and joins another, from where joinFrom says.
func (u *soakUser) switchRoom() {
	if len(u.want) >= len(u.s.roomNames) {
		return
	}
	i := u.rng.IntN(len(u.want))
	old := u.want[i]
	next := old
	for slicesContains(u.want, next) {
		next = u.s.roomNames[u.rng.IntN(len(u.s.roomNames))]
	}
	u.want[i] = next
	_ = u.js.request(soakRef{kind: refLeave, room: old},
		&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: old}}})
	if u.js.join(next) {
		u.s.counts.rejoins.Add(1)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// dropTCP closes the connection's TCP connection abruptly (RST, no HTTP/2
// GOAWAY): every stream on it ends, and gRPC reconnects.
func (u *soakUser) dropTCP() {
	u.tcpMu.Lock()
	vc := u.tcp
	u.tcpMu.Unlock()
	if vc == nil {
		return
	}
	if tc, ok := vc.Conn.(*net.TCPConn); ok {
		u.s.counts.drops.Add(1)
		_ = tc.SetLinger(0)
		_ = vc.Close()
	}
}

// vanish leaves the connection without a word: its TCP connection stays
// open but silent (closed only when the soak ends), and the user carries
// on over a new connection, resuming where it was.
func (u *soakUser) vanish(ctx context.Context) {
	u.tcpMu.Lock()
	vc := u.tcp
	u.tcpMu.Unlock()
	if vc == nil {
		return
	}
	vc.gone.Store(true)
	u.s.counts.vanished.Add(1)
	if u.js != nil {
		u.js.stop()
	}
	u.ghosts = append(u.ghosts, u.conn)
	if err := u.dial(); err != nil {
		u.s.check.violation(violStream, "%s: connect: %v", u.name, err)
		return
	}
	u.openSession(ctx)
}

// joinFrom returns the after_seq to join room with (nil: live). Unbounded
// (--max-replay 0), it is the user's position in the room if it has one.
// Bounded, a position at most --max-replay behind the known head is
// resumed from; a room the user left longer ago or never was in is
// joined live or from --max-replay behind the head, half each, so that
// what joins replay does not depend on how long the run has lasted.
func (u *soakUser) joinFrom(room string) *uint64 {
	pos, ok := u.position(room)
	if u.s.cfg.maxReplay == 0 {
		if !ok {
			return nil
		}
		return &pos
	}
	floor := u.s.replayFloor(room)
	if ok && pos >= floor {
		return &pos
	}
	if u.rng.IntN(2) == 0 {
		return nil
	}
	return &floor
}

// position returns the user's position in room, if it has one.
func (u *soakUser) position(room string) (uint64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	seq, ok := u.cursor[room]
	return seq, ok
}

func (u *soakUser) setPosition(room string, seq uint64) {
	u.mu.Lock()
	u.cursor[room] = seq
	u.mu.Unlock()
}

// acked forgets a send that got its OK reply.
func (u *soakUser) acked(id string) {
	u.mu.Lock()
	delete(u.unacked, id)
	u.mu.Unlock()
}

func (u *soakUser) isUnacked(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.unacked[id] != nil
}

// watchUnacked keeps the ledger entries of the sends without a reply:
// they will be sent again.
func (u *soakUser) watchUnacked() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, p := range u.unacked {
		u.ledger.watch(p.room, id)
	}
}

// unackedIn returns the ids and bodies of room's sends without an OK reply.
func (u *soakUser) unackedIn(room string) map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]string)
	for id, p := range u.unacked {
		if p.room == room {
			out[id] = p.body
		}
	}
	return out
}

// startSide runs fn on its own goroutine unless one of its kind runs.
func (u *soakUser) startSide(ctx context.Context, busy *atomic.Bool, fn func(context.Context, *rand.Rand, parleyv1.ChatServiceClient)) {
	if !busy.CompareAndSwap(false, true) {
		return
	}
	rng := rand.New(rand.NewPCG(u.rng.Uint64(), u.rng.Uint64()))
	api := u.api // the user's goroutine replaces it after vanishing
	u.side.Add(1)
	go func() {
		defer u.side.Done()
		defer busy.Store(false)
		fn(ctx, rng, api)
	}()
}

// sideStart picks a room and a start position for a Subscribe or REST
// stream: a little before the user's position in a room it knows (a
// replay, then live), or live in any room. With --max-replay, a position
// further behind the head than that counts as unknown, and the start is
// no further behind than that either.
func (u *soakUser) sideStart(rng *rand.Rand) (string, *uint64) {
	room := u.s.roomNames[rng.IntN(len(u.s.roomNames))]
	pos, ok := u.position(room)
	floor := u.s.replayFloor(room)
	if !ok || pos < floor || rng.IntN(4) == 0 {
		return room, nil
	}
	after := max(pos-min(pos, uint64(rng.IntN(100))), floor)
	return room, &after
}

// endStatus classifies how a stream ended: cut by the soak (its context
// ended or its connection was dropped), cut off as a slow consumer
// (returns the resume positions), or a violation.
func (u *soakUser) endStatus(ctx context.Context, what string, err error) (slow map[string]uint64, ok bool) {
	st := status.Convert(err)
	switch {
	case ctx.Err() != nil && st.Code() == codes.Canceled:
		return nil, true
	case st.Code() == codes.DeadlineExceeded:
		// The soak's own deadline on a side stream: the server enforces it
		// too, so its cancel can arrive just before the client's timer.
		return nil, true
	case st.Code() == codes.Unavailable:
		return nil, true // a dropped connection
	case st.Code() == codes.ResourceExhausted:
		if pos, isSlow := slowPositions(st); isSlow {
			u.s.counts.cutoffs.Add(1)
			return pos, true
		}
	}
	u.s.check.violation(violStream, "%s ended: %s", what, cli.Describe(err))
	return nil, false
}

// slowPositions reads a slow-consumer status's resume positions.
func slowPositions(st *status.Status) (map[string]uint64, bool) {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != "SLOW_CONSUMER" {
			continue
		}
		return metadataPositions(info.GetMetadata()), true
	}
	return nil, false
}

// metadataPositions reads "after_seq/<room>": seq entries.
func metadataPositions(md map[string]string) map[string]uint64 {
	out := make(map[string]uint64)
	for k, v := range md {
		room, ok := strings.CutPrefix(k, "after_seq/")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			out[room] = n
		}
	}
	return out
}

// checkCutPositions compares a slow consumer's resume positions with what
// the stream received: the server may not claim to have written more.
func (u *soakUser) checkCutPositions(what string, pos map[string]uint64, lasts map[string]uint64) {
	for room, seq := range pos {
		last, ok := lasts[room]
		switch {
		case !ok:
		case seq > last:
			u.s.check.violation(violCutAhead, "%s room %s: cut off with after_seq %d, but only %d arrived", what, room, seq, last)
		case seq < last:
			u.s.counts.cutBehind.Add(1)
		}
	}
}

func fmtAfter(after *uint64) string {
	if after == nil {
		return "live"
	}
	return fmt.Sprintf("after_seq %d", *after)
}
