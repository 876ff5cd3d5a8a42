package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Reading many rooms leaves the real server's memory where it was: every
// room a ListPresence or ListMessages loaded (each an access check too) is
// unloaded once the request is done. PARLEY_TOUCH_ROOMS sets how many rooms
// (default 20,000; docs/performance.md has the figures for 1,000,000).
func TestTouchingRoomsLeavesRSSFlat(t *testing.T) {
	n := 20_000
	if s := os.Getenv("PARLEY_TOUCH_ROOMS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("PARLEY_TOUCH_ROOMS: %v", err)
		}
	}
	d := startDaemon(t)
	d.stop(t)
	fillRooms(t, filepath.Join(d.dir, "parley.db"), n)
	d.start(t)
	c := parleyv1.NewChatServiceClient(dialDaemon(t, d.addr))
	ctx := bearer(context.Background(), d.token(t, "reader"))
	// The first requests page in the code they run and fill pools; what
	// follows is what the rooms cost.
	touchRooms(t, c, ctx, min(n, 1000))
	before := d.memory(t)
	start := time.Now()
	touchRooms(t, c, ctx, n)
	took := time.Since(start)
	live := d.metric(t, "parley_rooms_live")
	after := d.settledMemory(t, before)
	t.Logf("%v rooms loaded after the reads", live)
	t.Logf("%d rooms read in %v; anonymous RSS %.1f -> %.1f MiB, Go heap in use %.1f -> %.1f MiB, held by the Go runtime %.1f -> %.1f MiB",
		n, took.Round(time.Second), before.rss/(1<<20), after.rss/(1<<20), before.heap/(1<<20), after.heap/(1<<20),
		before.goHeld/(1<<20), after.goHeld/(1<<20))
	if live != 0 {
		t.Fatalf("%v rooms still loaded after %d were read", live, n)
	}
	if grew := after.rss - before.rss; n <= 100_000 && grew > 8<<20 {
		t.Fatalf("RSS grew by %.1f MiB over %d rooms read", grew/(1<<20), n)
	}
}

// fillRooms adds n public rooms, touch-0 to touch-<n-1>, to a stopped
// server's database in one statement (the API would take minutes).
func fillRooms(t *testing.T, path string, n int) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(`WITH RECURSIVE i(k) AS (SELECT 0 UNION ALL SELECT k+1 FROM i WHERE k+1 < ?)
		INSERT INTO rooms (name, visibility, created_by, created_at) SELECT 'touch-' || k, 1, 'admin', 1 FROM i`, n)
	if err != nil {
		t.Fatalf("fill rooms: %v", err)
	}
}

// touchRooms reads the presence and the newest messages of every room, 16
// requests at a time.
func touchRooms(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context, n int) {
	t.Helper()
	var wg sync.WaitGroup
	const workers = 16
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				room := fmt.Sprint("touch-", i)
				if _, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: room}); err != nil {
					errs <- fmt.Errorf("ListPresence %s: %w", room, err)
					return
				}
				if _, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: room, Limit: 1}); err != nil {
					errs <- fmt.Errorf("ListMessages %s: %w", room, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// memory is a process's anonymous resident memory (heap, stacks, SQLite's
// page cache: not the binary's code, which pages in as it first runs) and
// its Go heap in use.
type memory struct{ rss, heap, goHeld float64 }

func (d *daemon) memory(t *testing.T) memory {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Skipf("RSS from /proc: %v", err)
	}
	var m memory
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "RssAnon:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m.rss = kb * 1024
		}
	}
	m.heap = d.metric(t, "go_memstats_heap_inuse_bytes")
	m.goHeld = d.metric(t, "go_memstats_sys_bytes") - d.metric(t, "go_memstats_heap_released_bytes")
	return m
}

// settledMemory waits, up to a minute, for RSS to come back within 4 MiB
// of before — the Go runtime returns freed pages to the OS a little at a
// time — and returns the last reading.
func (d *daemon) settledMemory(t *testing.T, before memory) memory {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		m := d.memory(t)
		if m.rss-before.rss <= 4<<20 || time.Now().After(deadline) {
			return m
		}
		time.Sleep(500 * time.Millisecond) // polling RSS, with a deadline
	}
}

// metric reads one unlabelled value from the server's /metrics.
func (d *daemon) metric(t *testing.T, name string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+d.addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity") // a gzipped answer costs the server 2 MiB of pooled compressor
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
