package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// procStatusKB reads a "Vm..." line of /proc/PID/status, in KiB.
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// hugeHeaderBlock hpack-encodes a gRPC request for method with no token
// and size bytes of other headers, in 8 KiB fields.
func hugeHeaderBlock(method string, size int) []byte {
	var buf strings.Builder
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method},
		{":authority", "parley"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	val := make([]byte, 8<<10)
	for i := 0; i*len(val) < size; i++ {
		rand.Read(val)
		for j := range val {
			val[j] = 'a' + val[j]%26
		}
		enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-pad-%d", i), Value: string(val)})
	}
	return []byte(buf.String())
}

// attackAnswer is what a raw HTTP/2 client sending block got back.
type attackAnswer struct {
	written int    // header block bytes the server took before the end
	answer  string // "GOAWAY <code>", "RST_STREAM <code>", "HEADERS <grpc-status>" or "closed"
}

// sendHeaderBlock speaks HTTP/2 as a hostile client would: preface,
// settings, then block as HEADERS and CONTINUATION frames on stream 1,
// whatever the server's SETTINGS_MAX_HEADER_LIST_SIZE. With hold, the
// stream is left open (a Join that never ends); either way it waits for
// the server's answer until wait ends.
func sendHeaderBlock(addr string, block []byte, hold bool, wait time.Duration) attackAnswer {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return attackAnswer{answer: "dial: " + err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	fr := http2.NewFramer(c, c)
	var a attackAnswer
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		a.answer = readAnswer(fr)
	}()
	if _, err := c.Write([]byte(http2.ClientPreface)); err == nil && fr.WriteSettings() == nil {
		const chunk = 16 << 10
		first := min(chunk, len(block))
		err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:first],
			EndHeaders: first == len(block), EndStream: !hold})
		a.written = first
		for err == nil && a.written < len(block) {
			end := min(a.written+chunk, len(block))
			err = fr.WriteContinuation(1, end == len(block), block[a.written:end])
			if err == nil {
				a.written = end
			}
		}
	}
	<-answered
	return a
}

// readAnswer reads frames until the server answers stream 1 or the
// connection ends.
func readAnswer(fr *http2.Framer) string {
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return fmt.Sprintf("GOAWAY %v %q", f.ErrCode, f.DebugData())
		case *http2.RSTStreamFrame:
			return fmt.Sprintf("RST_STREAM %v", f.ErrCode)
		case *http2.MetaHeadersFrame:
			st := "HEADERS"
			for _, hf := range f.Fields {
				if strings.HasPrefix(hf.Name, "grpc-") {
					st += fmt.Sprintf(" %s: %s", hf.Name, hf.Value)
				}
			}
			return st
		}
	}
}

// Forty clients with no token sending 8 MB of headers (grpc-go's default
// limit is 16 MB, read before any token is checked) leave the server's
// memory where it was: the header list is bounded by --max-header-bytes.
// Clients that honour the server's HTTP/2 settings (grpc-go) fail the call
// with a status naming the limit; REST answers 431; a hostile client that
// sends anyway has its connection closed.
func TestHugeHeadersLeaveMemoryAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 40 × 8 MB of headers to the real binary")
	}
	d := startDaemon(t)
	pid := d.cmd.Process.Pid
	const size = 8 << 20
	block := hugeHeaderBlock(parleyv1.ChatService_ListRooms_FullMethodName, size)
	joinBlock := hugeHeaderBlock(parleyv1.ChatService_Join_FullMethodName, size)
	// Warm the server up with one real call of each kind, then measure.
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := parleyv1.NewChatServiceClient(conn)
	if _, err := client.ListRooms(bearer(context.Background(), d.token(t, "alice")), &parleyv1.ListRoomsRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Logf("cannot reset the peak RSS (%v): VmHWM includes start-up", err)
	}
	before := procStatusKB(t, pid, "VmRSS")

	// attack runs n clients, each sending block again and again for
	// at least dur, and counts the answers they got.
	attack := func(n int, block []byte, hold bool, dur time.Duration) map[string]int {
		var mu sync.Mutex
		answers := map[string]int{}
		var wg sync.WaitGroup
		end := time.Now().Add(dur)
		for range n {
			wg.Go(func() {
				for {
					a := sendHeaderBlock(d.addr, block, hold, 20*time.Second)
					key := a.answer
					if a.written >= len(block) {
						key += " after the whole block"
					}
					mu.Lock()
					answers[key]++
					mu.Unlock()
					if time.Now().After(end) {
						return
					}
				}
			})
		}
		wg.Wait()
		return answers
	}
	answers := attack(40, block, false, 3*time.Second)
	t.Logf("40 raw clients sending 8 MB of headers to ListRooms for 3s: %v", answers)
	for a, n := range answers {
		if a != "closed" {
			t.Errorf("%d raw clients got %q; want the connection closed before the whole header list was read", n, a)
		}
	}
	answers = attack(30, joinBlock, true, 0)
	t.Logf("30 raw Join streams held open with 8 MB of headers each: %v", answers)
	for a, n := range answers {
		if a != "closed" {
			t.Errorf("%d Join streams got %q; want the connection closed", n, a)
		}
	}

	peak, after := procStatusKB(t, pid, "VmHWM"), procStatusKB(t, pid, "VmRSS")
	t.Logf("RSS %d KiB before, peak %d KiB, %d KiB after", before, peak, after)
	const marginKB = 24 << 10 // connection churn: transports, goroutines and GC slack
	if peak-before > marginKB || after-before > marginKB {
		t.Fatalf("RSS went from %d KiB to a peak of %d KiB (%d KiB after); want at most %d KiB more", before, peak, after, marginKB)
	}
	// Real clients, at once: each is told why.
	pad := strings.Repeat("x", size)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-pad", pad)
			_, err := client.ListRooms(ctx, &parleyv1.ListRoomsRequest{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "maximum size (32768 bytes)") {
			t.Fatalf("grpc-go client with 8 MB of metadata: %v, want INTERNAL naming the server's 32768-byte limit", st)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+d.addr+"/v1/rooms", nil)
	req.Header.Set("X-Pad", pad[:1<<20])
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatalf("REST with 1 MB of headers: %v", err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("REST with 1 MB of headers: %s, want 431", resp.Status)
	}

	// The server still serves.
	if _, err := client.ListRooms(bearer(context.Background(), d.token(t, "alice")), &parleyv1.ListRoomsRequest{}); err != nil {
		t.Fatalf("after the attack: %v", err)
	}
}
