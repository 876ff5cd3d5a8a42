package postgres_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
)

// TestTwoStoresOneOrder is two nodes on one schema: both append to the same
// rooms at once, and every message with a ClientMsgID is sent from both
// (a client that retried through another node). Each room ends with seqs
// exactly 1..N, each id stored once, and both senders of an id told of the
// same message, exactly one of them as the original.
func TestTwoStoresOneOrder(t *testing.T) {
	schema := postgres.NewSchema(t)
	nodes := []*postgres.Store{
		postgres.OpenTest(t, postgres.Config{Schema: schema}),
		postgres.OpenTest(t, postgres.Config{Schema: schema, MaxBatch: 16}),
	}
	rooms := []string{"r0", "r1", "r2", "r3"}
	for _, r := range rooms {
		if _, err := nodes[0].CreateRoom(context.Background(), store.Room{Name: r, Visibility: store.Public}); err != nil {
			t.Fatal(err)
		}
	}
	const ids, plain, workers = 300, 100, 16 // per room; plain ones per room per node
	var mu sync.Mutex
	byID := map[string][]outcome{}
	var plainAcked []store.Message
	var wg sync.WaitGroup
	for n, s := range nodes {
		jobs := make(chan store.NewMessage)
		for range workers {
			wg.Go(func() {
				for m := range jobs {
					got, dup, err := s.Append(context.Background(), m)
					if err != nil {
						t.Errorf("node %d: Append(%+v): %v", n, m, err)
						continue
					}
					mu.Lock()
					if m.ClientMsgID != "" {
						byID[m.Room+"/"+m.ClientMsgID] = append(byID[m.Room+"/"+m.ClientMsgID], outcome{got, dup})
					} else {
						plainAcked = append(plainAcked, got)
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			defer close(jobs)
			for i := range ids {
				for _, r := range rooms {
					// Both nodes send the same id with the same sender; the
					// body says which node's copy was stored.
					jobs <- store.NewMessage{Room: r, Sender: fmt.Sprint("user", i%7), Body: fmt.Sprint("node", n), ClientMsgID: fmt.Sprint("id-", i)}
					if i < plain {
						jobs <- store.NewMessage{Room: r, Sender: "plain", Body: fmt.Sprint("node", n, "/", i)}
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	careful := postgres.CarefulBatches(nodes[0]) + postgres.CarefulBatches(nodes[1])
	t.Logf("batches redone carefully: %d", careful)
	if careful == 0 {
		t.Errorf("no batch met a duplicate stored by the other node: the test did not test that")
	}
	for key, outs := range byID {
		if len(outs) != 2 || !reflect.DeepEqual(outs[0].msg, outs[1].msg) || outs[0].dup == outs[1].dup {
			t.Fatalf("id %s: the two nodes were told %+v", key, outs)
		}
	}
	for _, r := range rooms {
		checkRoomOrder(t, nodes, r, ids+2*plain, byID, plainAcked)
	}
}

type outcome struct {
	msg store.Message
	dup bool
}

// checkRoomOrder checks that both nodes read room as seqs 1..n, each
// message the one its sender was acknowledged with.
func checkRoomOrder(t *testing.T, nodes []*postgres.Store, room string, n int, byID map[string][]outcome, plain []store.Message) {
	t.Helper()
	acked := map[uint64]store.Message{}
	for _, m := range plain {
		if m.Room == room {
			acked[m.Seq] = m
		}
	}
	for key, outs := range byID {
		if m := outs[0].msg; m.Room == room {
			if prev, ok := acked[m.Seq]; ok {
				t.Fatalf("room %s: seq %d acknowledged for %+v and for %s", room, m.Seq, prev, key)
			}
			acked[m.Seq] = m
		}
	}
	if len(acked) != n {
		t.Fatalf("room %s: %d distinct seqs acknowledged, want %d", room, len(acked), n)
	}
	for i, s := range nodes {
		stored, err := s.Messages(context.Background(), room, store.Query{Limit: n + 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != n {
			t.Fatalf("node %d reads %d messages in room %s, want %d", i, len(stored), room, n)
		}
		for j, m := range stored {
			if m.Seq != uint64(j+1) || !reflect.DeepEqual(m, acked[m.Seq]) {
				t.Fatalf("node %d: room %s stored[%d] = %+v, acknowledged %+v", i, room, j, m, acked[m.Seq])
			}
		}
		if r, err := s.Room(context.Background(), room); err != nil || r.LastSeq != uint64(n) {
			t.Fatalf("node %d: room %s head %d (%v), want %d", i, room, r.LastSeq, err, n)
		}
	}
}
