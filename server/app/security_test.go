package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

type backendKeys struct {
	rsa      *rsa.PrivateKey
	rsaPEM   []byte
	ed       ed25519.PrivateKey
	pemFile  string
	jwksFile string
	audience string
	issuer   string
}

// newBackendKeys makes the keys an app's backend would sign tokens with:
// an RSA key given to parleyd as a PEM file and an Ed25519 key in a JWKS.
func newBackendKeys(t *testing.T) *backendKeys {
	t.Helper()
	b := &backendKeys{audience: "parley", issuer: "https://backend.example"}
	var err error
	if b.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&b.rsa.PublicKey)
	b.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	dir := t.TempDir()
	b.pemFile = filepath.Join(dir, "backend.pem")
	os.WriteFile(b.pemFile, b.rsaPEM, 0o600)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	b.ed = priv
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}})
	b.jwksFile = filepath.Join(dir, "jwks.json")
	os.WriteFile(b.jwksFile, jwks, 0o600)
	return b
}

func (b *backendKeys) claims(user string, exp time.Duration, aud string) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: user, Issuer: b.issuer, Audience: jwt.ClaimStrings{aud},
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp))}
}

func sign(t *testing.T, m jwt.SigningMethod, c jwt.Claims, key any, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Tokens from the app's backend: RS256 and EdDSA verify with their pinned
// keys; every classic forgery is refused and changes nothing.
func TestTokenAttacks(t *testing.T) {
	b := newBackendKeys(t)
	ts := startServer(t, func(c *appConfig) {
		c.Tokens.PublicKeyFile, c.Tokens.JWKSFile = b.pemFile, b.jwksFile
		c.Tokens.Audience, c.Tokens.Issuer = b.audience, b.issuer
	})
	client := parleyv1.NewChatServiceClient(ts.dial(t))
	send := func(token string) error {
		_, err := client.SendMessage(authCtx(t, token), &parleyv1.SendMessageRequest{Room: "lobby", Body: "hi"})
		return err
	}
	good := sign(t, jwt.SigningMethodRS256, b.claims("alice", time.Hour, "parley"), b.rsa, "")
	if err := send(good); err != nil {
		t.Fatalf("RS256 token from the backend: %v", err)
	}
	if err := send(sign(t, jwt.SigningMethodEdDSA, b.claims("alice", time.Hour, "parley"), b.ed, "ed-1")); err != nil {
		t.Fatalf("EdDSA token from the JWKS: %v", err)
	}
	head := roomHead(t, client, authCtx(t, good), "lobby")
	attacks := []struct{ name, token, msg string }{
		{"alg none", sign(t, jwt.SigningMethodNone, b.claims("alice", time.Hour, "parley"), jwt.UnsafeAllowNoneSignatureType, ""), "invalid token"},
		{"HS256 signed with the RS256 public key", sign(t, jwt.SigningMethodHS256, b.claims("alice", time.Hour, "parley"), b.rsaPEM, ""), "signature is invalid"},
		{"expired", sign(t, jwt.SigningMethodRS256, b.claims("alice", -time.Minute, "parley"), b.rsa, ""), "expired"},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, b.claims("alice", time.Hour, "someone-else"), b.rsa, ""), "aud"},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, b.claims("alice", time.Hour, "parley"), b.ed, "ed-2"), "no EdDSA key"},
		{"RS256 from another key", func() string {
			other, _ := rsa.GenerateKey(rand.Reader, 2048)
			return sign(t, jwt.SigningMethodRS256, b.claims("alice", time.Hour, "parley"), other, "")
		}(), "signature"},
		{"sub is not a user id", sign(t, jwt.SigningMethodRS256, b.claims("", time.Hour, "parley"), b.rsa, ""), "sub"},
		{"exp is a string", sign(t, jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "iss": b.issuer, "aud": "parley", "exp": "9999999999"}, b.rsa, ""), "exp is a JSON string"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			st := status.Convert(send(a.token))
			if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), a.msg) {
				t.Fatalf("got %v, want UNAUTHENTICATED mentioning %q", st, a.msg)
			}
		})
	}
	if h := roomHead(t, client, authCtx(t, good), "lobby"); h != head {
		t.Fatalf("head moved from %d to %d", head, h)
	}
}

// The sender is always the token's user: a payload that claims another
// user is refused in REST (an unknown field) and stored as the caller's in
// gRPC (where unknown fields are skipped, as protobuf does).
func TestPayloadCannotClaimAnotherUser(t *testing.T) {
	ts := startServer(t)
	tok := ts.token(t, "mallory")
	code, body := restDo(t, http.MethodPost, "http://"+ts.Addr()+"/v1/rooms/lobby/messages", tok, map[string]string{"body": "as bob", "sender": "bob"})
	if msg := fmt.Sprint(body["message"]); code != http.StatusBadRequest || !strings.Contains(msg, `unknown field "sender"`) {
		t.Fatalf("REST with a sender field: %d %v, want 400 naming the field", code, body)
	}
	// gRPC: the fields of a Message (sender is 3) smuggled as unknown fields.
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendString(req, "lobby")
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, "as bob")
	req = protowire.AppendTag(req, 13, protowire.BytesType)
	req = protowire.AppendString(req, "bob")
	var out []byte
	conn := ts.dial(t)
	if err := conn.Invoke(authCtx(t, tok), parleyv1.ChatService_SendMessage_FullMethodName, &req, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatal(err)
	}
	c := parleyv1.NewChatServiceClient(conn)
	resp, err := c.ListMessages(authCtx(t, tok), &parleyv1.ListMessagesRequest{Room: "lobby", Limit: 1})
	if err != nil || resp.GetMessages()[0].GetSender() != "mallory" {
		t.Fatalf("stored sender %q (%v), want mallory", resp.GetMessages()[0].GetSender(), err)
	}
}

// Limits on streams, rooms and connections answer RESOURCE_EXHAUSTED (or
// hold the stream, as HTTP/2 does) and change nothing.
func TestResourceLimits(t *testing.T) {
	ts := startServer(t, func(c *appConfig) {
		c.MaxRoomsPerConn, c.MaxStreamsPerConn, c.MaxJoinStreamsPerUser = 5, 8, 3
		c.ReadHeaderTimeout = 300 * time.Millisecond
	})
	for i := range 6 {
		ts.createRoom(t, fmt.Sprint("many-", i))
	}
	t.Run("too many rooms on one stream", func(t *testing.T) {
		js := openJoin(t, ts.dial(t), ts.token(t, "roomer"))
		for i := range 5 {
			js.join(fmt.Sprint("many-", i), nil)
		}
		// Then 10,000 more join frames: each refused, the stream goes on.
		refs := make([]string, 0, 10000)
		for i := range 10000 {
			refs = append(refs, js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: fmt.Sprint("many-", 5+i%2)}}}))
		}
		for _, ref := range refs {
			if r := js.reply(ref); codes.Code(r.GetCode()) != codes.ResourceExhausted || !strings.Contains(r.GetError(), "limit 5") {
				t.Fatalf("join past the limit: %s %q", codes.Code(r.GetCode()), r.GetError())
			}
		}
		if r := js.post("many-0", "still here", ""); r.GetCode() != 0 {
			t.Fatalf("stream unusable after refused joins: %s", r.GetError())
		}
	})
	t.Run("too many Join streams for one user", func(t *testing.T) {
		tok := ts.token(t, "hoarder")
		for range 3 {
			openJoin(t, ts.dial(t), tok).join("lobby", nil)
		}
		extra := openJoin(t, ts.dial(t), tok)
		st := extra.waitEnd()
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "3 Join and Subscribe streams") || retryDelay(st) == 0 {
			t.Fatalf("4th stream: %v, want RESOURCE_EXHAUSTED with RetryInfo", st)
		}
		// Subscribe streams count too: a user cannot get round the limit
		// with receive-only streams.
		sub, err := parleyv1.NewChatServiceClient(ts.dial(t)).Subscribe(authCtx(t, tok), &parleyv1.SubscribeRequest{Room: "lobby"})
		if err == nil {
			_, err = sub.Recv()
		}
		if st := statusOf(err); st.Code() != codes.ResourceExhausted || retryDelay(st) == 0 {
			t.Fatalf("a Subscribe stream past the limit: %v, want RESOURCE_EXHAUSTED with RetryInfo", err)
		}
	})
	t.Run("too many streams on one connection", func(t *testing.T) {
		conn := ts.dial(t)
		for i := range 8 {
			openJoin(t, conn, ts.token(t, fmt.Sprint("conn-user-", i))).join("lobby", nil)
		}
		// The ninth waits for the server's stream quota instead of opening.
		ctx, cancel := context.WithTimeout(authCtx(t, ts.token(t, "conn-user-9")), 300*time.Millisecond)
		defer cancel()
		_, err := parleyv1.NewChatServiceClient(conn).ListRooms(ctx, &parleyv1.ListRoomsRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("ninth stream on a connection limited to 8: %v, want it held until the deadline", err)
		}
	})
	t.Run("slow-header HTTP client", func(t *testing.T) {
		for name, partial := range map[string]string{"HTTP/1.1 headers": "GET /healthz HTTP/1.1\r\nHost: x\r\n", "HTTP/2 preface": "PRI * HTTP/2.0\r\n"} {
			c, err := net.Dial("tcp", ts.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(partial))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err == nil && !strings.Contains(string(buf[:n]), "408") {
				t.Fatalf("%s: server answered %q to a request that never finished", name, buf[:n])
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("%s: connection held %v; ReadHeaderTimeout is 300ms", name, time.Since(start))
			}
		}
	})
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// One user flooding sends is held to the per-user rate with
// RESOURCE_EXHAUSTED, while another user's delivery latency stays within
// 2x of its unloaded value.
func TestSendFloodDoesNotSlowOthers(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.SendRate, c.SendBurst = 20, 20 })
	ts.createRoom(t, "flooded")
	watcher := openJoin(t, ts.dial(t), ts.token(t, "watcher"))
	watcher.join("flooded", nil)
	good := openJoin(t, ts.dial(t), ts.token(t, "good"))
	good.join("flooded", nil)

	// p99 of the time from a send by "good" until the watcher receives it.
	measure := func(n int) time.Duration {
		lat := make([]time.Duration, 0, n)
		for i := range n {
			body := fmt.Sprint("probe ", i, " ", time.Now().UnixNano())
			start := time.Now()
			if r := good.post("flooded", body, ""); r.GetCode() != 0 {
				t.Fatalf("probe send: %s", r.GetError())
			}
			watcher.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetBody() == body }, nil)
			lat = append(lat, time.Since(start))
			time.Sleep(60 * time.Millisecond) // about 16 msgs/s: within good's own rate
		}
		slices.Sort(lat)
		return lat[n*99/100]
	}
	// Machine noise (other test packages run beside this one) moves
	// latencies by milliseconds, so unloaded and flooded measurements are
	// taken in alternating rounds and the test passes on a round that
	// shows the bound; every round is printed.
	const probes, rounds = 50, 3
	// Four concurrent clients sending as fast as they can, ignoring
	// RetryInfo. Refused sends are held before they are answered, so the
	// flood cannot take the machine's two cores from the others.
	const floodWorkers = 4
	held := false
	for round := range rounds {
		unloaded := measure(probes)
		loaded, accepted, refused, elapsed := flooded(t, ts, floodWorkers, func() time.Duration { return measure(probes) })
		t.Logf("round %d: good's p99 delivery %v unloaded, %v while flooded; flooder: %d accepted, %d refused in %v",
			round, unloaded, loaded, accepted, refused, elapsed.Round(time.Millisecond))
		if refused == 0 {
			t.Fatal("the flood was never refused")
		}
		if limit := 20*elapsed.Seconds() + 20 + 10; float64(accepted) > limit {
			t.Fatalf("flooder got %d sends accepted in %v, over the rate of 20/s with a burst of 20", accepted, elapsed)
		}
		if loaded <= 2*unloaded {
			held = true
			break
		}
	}
	switch {
	case held:
	case raceEnabled:
		// Under the race detector every refused request costs several times
		// its real CPU, so the flood measures the detector; .ci/run runs
		// this test without -race as well, where the bound is asserted.
		t.Logf("race detector on: latency bound not asserted (see the rounds above)")
	default:
		t.Fatalf("p99 delivery latency while flooded was more than 2x the unloaded value in all %d rounds", rounds)
	}
}

// flooded runs measure while workers send to "flooded" as fast as they can
// as user "flooder", and returns its result with the flood's counts.
func flooded(t *testing.T, ts *testServer, workers int, measure func() time.Duration) (time.Duration, int64, int64, time.Duration) {
	var flood sync.WaitGroup
	var accepted, refused atomic.Int64
	stop := make(chan struct{})
	for range workers {
		c, ctx := ts.client(t, "flooder")
		flood.Add(1)
		go func() {
			defer flood.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "flooded", Body: "spam"})
				switch st := status.Convert(err); {
				case err == nil:
					accepted.Add(1)
				case st.Code() == codes.ResourceExhausted && retryDelay(st) > 0:
					refused.Add(1)
				default:
					t.Errorf("flood send: %v", st)
					return
				}
			}
		}()
	}
	start := time.Now()
	p99 := measure()
	close(stop)
	flood.Wait()
	return p99, accepted.Load(), refused.Load(), time.Since(start)
}

// A Join stream ends UNAUTHENTICATED when its token expires, unless the
// client refreshes it on the stream first; a refresh must be for the same
// user.
func TestTokenExpiryAndRefreshOnStream(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.Tokens.Leeway = time.Millisecond })
	short := func(user string) string {
		tok, _, err := ts.Keys.Mint(user, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	conn := ts.dial(t)
	lapsing := openJoin(t, conn, short("lapse"))
	lapsing.join("lobby", nil)
	kept := openJoin(t, conn, short("keeper"))
	kept.join("lobby", nil)

	ref := kept.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Refresh{Refresh: &parleyv1.JoinRequest_RefreshToken{Token: ts.token(t, "someone-else")}}})
	if r := kept.reply(ref); codes.Code(r.GetCode()) != codes.PermissionDenied {
		t.Fatalf("refresh with another user's token: %v", r)
	}
	ref = kept.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Refresh{Refresh: &parleyv1.JoinRequest_RefreshToken{Token: "garbage"}}})
	if r := kept.reply(ref); codes.Code(r.GetCode()) != codes.Unauthenticated {
		t.Fatalf("refresh with a bad token: %v", r)
	}
	ref = kept.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Refresh{Refresh: &parleyv1.JoinRequest_RefreshToken{Token: ts.token(t, "keeper")}}})
	if r := kept.reply(ref); r.GetCode() != 0 {
		t.Fatalf("refresh: %v", r)
	}

	st := lapsing.waitEnd()
	if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "expired") {
		t.Fatalf("stream with an expired token ended with %v, want UNAUTHENTICATED", st)
	}
	// The refreshed stream outlives its first token.
	if r := kept.post("lobby", "still here", ""); r.GetCode() != 0 {
		t.Fatalf("refreshed stream after the first token expired: %v", r)
	}
}

// DevLogin answers only on a --dev server.
func TestDevLoginOnlyWithDev(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.Dev = false })
	c := parleyv1.NewChatServiceClient(ts.dial(t))
	_, err := c.DevLogin(context.Background(), &parleyv1.DevLoginRequest{User: "anyone"})
	wantCode(t, "DevLogin without --dev", err, codes.PermissionDenied, "--dev")
	dev := startServer(t)
	resp, err := parleyv1.NewChatServiceClient(dev.dial(t)).DevLogin(context.Background(), &parleyv1.DevLoginRequest{User: "anyone"})
	if err != nil || resp.GetToken() == "" {
		t.Fatalf("DevLogin with --dev: %v", err)
	}
	if id, err := dev.Keys.Verify(resp.GetToken()); err != nil || id.User != "anyone" {
		t.Fatalf("dev token verifies as %v (%v)", id, err)
	}
}

func TestDevListenAddressRule(t *testing.T) {
	for _, c := range []struct {
		listen      string
		allowRemote bool
		ok          bool
	}{
		{"127.0.0.1:8080", false, true}, {"localhost:8080", false, true}, {"[::1]:8080", false, true},
		{"0.0.0.0:8080", false, false}, {":8080", false, false}, {"192.0.2.1:8080", false, false},
		{"0.0.0.0:8080", true, true},
	} {
		err := appConfig{Dev: true, DevAllowRemote: c.allowRemote, Listen: c.listen}.Validate()
		if (err == nil) != c.ok {
			t.Errorf("--dev --listen %s (allow remote %v): %v", c.listen, c.allowRemote, err)
		}
	}
}

// A send refused for its rate on a Join stream says in the reply when to
// retry.
func TestJoinReplyCarriesRetryAfter(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.SendRate, c.SendBurst = 1, 1 })
	js := openJoin(t, ts.dial(t), ts.token(t, "hasty"))
	js.join("lobby", nil)
	if r := js.post("lobby", "one", ""); r.GetCode() != 0 {
		t.Fatalf("first send: %v", r)
	}
	r := js.post("lobby", "two", "")
	if codes.Code(r.GetCode()) != codes.ResourceExhausted || r.GetRetryAfter().AsDuration() <= 0 {
		t.Fatalf("second send within the rate: %v, want RESOURCE_EXHAUSTED with retry_after", r)
	}
}

// The REST gateway forwards only the headers the API reads: identity
// smuggled in a Grpc-Metadata-* header does not reach the service.
func TestGatewayForwardsOnlyAllowedHeaders(t *testing.T) {
	ts := startServer(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+ts.Addr()+"/v1/rooms", nil)
	req.Header.Set("Grpc-Metadata-Authorization", "Bearer "+ts.token(t, "mallory"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v1/rooms with only Grpc-Metadata-Authorization: %s, want 401", resp.Status)
	}
}

// Logs never carry message bodies or tokens, even at debug level and for
// rejected requests.
func TestLogsCarryNoBodiesOrTokens(t *testing.T) {
	var buf syncBuffer
	ts := startServer(t, func(c *appConfig) {
		c.Log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	tok := ts.token(t, "logged")
	js := openJoin(t, ts.dial(t), tok)
	js.join("lobby", nil)
	js.post("lobby", "secret-body-7f3a", "")
	js.post("lobby", strings.Repeat("secret-body-7f3a", 400), "") // over the limit: rejected
	c := parleyv1.NewChatServiceClient(ts.dial(t))
	c.SendMessage(authCtx(t, tok+"x"), &parleyv1.SendMessageRequest{Room: "lobby", Body: "secret-body-7f3a"})
	c.DevLogin(context.Background(), &parleyv1.DevLoginRequest{User: "dev-user"})
	js.closeAndWait()
	logs := buf.String()
	if !strings.Contains(logs, "logged") {
		t.Fatalf("the debug log shows nothing of the session:\n%s", logs)
	}
	for _, secret := range []string{"secret-body-7f3a", tok[:40]} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, logs)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A user who floods CreateRoom is refused past the burst, with when to
// retry, over gRPC and REST; a refused call creates nothing, and other
// users keep their own budget. (Each public room is announced to every
// Join connection of the cluster: unbounded, one user could fill
// everyone's queue.)
func TestCreateRoomFloodRefused(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.RoomCreateRate, c.RoomCreateBurst = 0.001, 3 })
	mallory, mctx := ts.client(t, "mallory")
	for i := range 3 {
		if _, err := mallory.CreateRoom(mctx, &parleyv1.CreateRoomRequest{Name: fmt.Sprint("spam-", i)}); err != nil {
			t.Fatalf("room %d of the burst: %v", i, err)
		}
	}
	_, err := mallory.CreateRoom(mctx, &parleyv1.CreateRoomRequest{Name: "spam-3"})
	if st := statusOf(err); st.Code() != codes.ResourceExhausted || retryDelay(st) <= 0 || !strings.Contains(st.Message(), "creating rooms too fast") {
		t.Fatalf("a room past the burst: %v, want RESOURCE_EXHAUSTED with a retry delay", err)
	}
	code, body := restDo(t, http.MethodPost, "http://"+ts.Addr()+"/v1/rooms", ts.token(t, "mallory"), map[string]any{"name": "spam-4"})
	if code != http.StatusTooManyRequests {
		t.Fatalf("REST create past the burst: %d %v, want 429", code, body)
	}
	// Bad input is refused before the budget: it takes no token and
	// answers INVALID_ARGUMENT, not RESOURCE_EXHAUSTED.
	if _, err := mallory.CreateRoom(mctx, &parleyv1.CreateRoomRequest{Name: "no spaces allowed"}); statusOf(err).Code() != codes.InvalidArgument {
		t.Fatalf("a bad name past the burst: %v, want INVALID_ARGUMENT", err)
	}
	alice, actx := ts.client(t, "alice")
	for _, name := range []string{"spam-3", "spam-4"} {
		if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: name}); err != nil {
			t.Fatalf("alice creates %s, which mallory's refused calls must not have created: %v", name, err)
		}
	}
	resp, err := alice.ListRooms(actx, &parleyv1.ListRoomsRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]string{}
	for _, r := range resp.GetRooms() {
		by[r.GetName()] = r.GetCreatedBy()
	}
	for name, want := range map[string]string{"spam-0": "mallory", "spam-2": "mallory", "spam-3": "alice", "spam-4": "alice"} {
		if by[name] != want {
			t.Errorf("room %s created by %q, want %q (rooms: %v)", name, by[name], want, by)
		}
	}
}

// A direct message that is bad input creates no direct room, and new
// direct rooms draw on the sender's room-creation budget: a user cannot
// fill the store with rooms by messaging made-up users.
func TestDirectRoomsBadInputAndFlood(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.RoomCreateRate, c.RoomCreateBurst = 0.001, 2 })
	mallory, mctx := ts.client(t, "mallory")
	for _, req := range []*parleyv1.SendMessageRequest{
		{ToUser: "bob", Body: ""},
		{ToUser: "bob", Body: strings.Repeat("x", 5000)},
		{ToUser: "bob", Body: "hi", ClientMsgId: strings.Repeat("i", 100)},
	} {
		if _, err := mallory.SendMessage(mctx, req); statusOf(err).Code() != codes.InvalidArgument {
			t.Fatalf("bad direct message (body %d bytes, id %d): %v, want INVALID_ARGUMENT", len(req.GetBody()), len(req.GetClientMsgId()), err)
		}
	}
	bob, bctx := ts.client(t, "bob")
	if _, err := bob.ListMessages(bctx, &parleyv1.ListMessagesRequest{Room: "dm:bob:mallory"}); statusOf(err).Code() != codes.NotFound {
		t.Fatalf("after bad direct messages only, the direct room: %v, want NOT_FOUND (never created)", err)
	}
	// Two new direct rooms fit the burst; a third is refused and made not.
	for _, to := range []string{"bob", "carol"} {
		if _, err := mallory.SendMessage(mctx, &parleyv1.SendMessageRequest{ToUser: to, Body: "hi"}); err != nil {
			t.Fatalf("direct message to %s: %v", to, err)
		}
	}
	_, err := mallory.SendMessage(mctx, &parleyv1.SendMessageRequest{ToUser: "dave", Body: "hi"})
	if st := statusOf(err); st.Code() != codes.ResourceExhausted || retryDelay(st) <= 0 {
		t.Fatalf("a third new direct room past the burst: %v, want RESOURCE_EXHAUSTED with a retry delay", err)
	}
	dave, dctx := ts.client(t, "dave")
	if _, err := dave.ListMessages(dctx, &parleyv1.ListMessagesRequest{Room: "dm:dave:mallory"}); statusOf(err).Code() != codes.NotFound {
		t.Fatalf("the refused direct room: %v, want NOT_FOUND (never created)", err)
	}
	// Messages into existing direct rooms are sends, not creations.
	for range 3 {
		if _, err := mallory.SendMessage(mctx, &parleyv1.SendMessageRequest{ToUser: "bob", Body: "again"}); err != nil {
			t.Fatalf("a message into an existing direct room: %v", err)
		}
	}
}

// Membership changes count as sends: a room's creator who adds and
// removes a user in a loop is refused past the send rate, with when to
// retry, and the refused change is not made.
func TestMembershipFloodRefused(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.SendRate, c.SendBurst = 0.001, 2 })
	alice, actx := ts.client(t, "alice")
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "club", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: "club", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.RemoveMember(actx, &parleyv1.RemoveMemberRequest{Room: "club", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	_, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: "club", User: "bob"})
	if st := statusOf(err); st.Code() != codes.ResourceExhausted || retryDelay(st) <= 0 {
		t.Fatalf("a third membership change past the burst: %v, want RESOURCE_EXHAUSTED with a retry delay", err)
	}
	resp, err := alice.ListMembers(actx, &parleyv1.ListMembersRequest{Room: "club"})
	if err != nil || slices.Contains(resp.GetMembers(), "bob") {
		t.Fatalf("members after the refused add: %v (%v), want bob not among them", resp.GetMembers(), err)
	}
}
