package sqlstore

import (
	"context"

	"github.com/parleychat/parley/server/internal/store"
)

// PruneChunk is how many seqs one prune step deletes. A step must stay
// short: SQLite's shares a writer batch with appends, PostgreSQL's is a
// transaction of its own beside them.
const PruneChunk = 1000

// listPage is how many rooms Prune reads at a time.
const listPage = 500

// Pruner is what Prune needs of a store.
type Pruner struct {
	// ListRooms is the store's ListRooms.
	ListRooms func(ctx context.Context, afterName string, limit int) ([]store.Room, error)
	// Bounds returns the seq before room's oldest stored message and, if
	// the retention limits age, its newest message old enough to delete (0
	// if none).
	Bounds func(ctx context.Context, room string) (before, old uint64, err error)
	// NewestMessage returns the seq of room's nth newest message (entries
	// of other kinds do not count), 0 if it holds fewer.
	NewestMessage func(ctx context.Context, room string, n int) (uint64, error)
	// Delete deletes room's entries with after < seq <= upto, and every
	// entry and reaction that targets one of them, and returns how many
	// entries it deleted.
	Delete func(ctx context.Context, room string, after, upto uint64) (int64, error)
}

// Prune implements store.Store.Prune with pr: room by room, in name order,
// it works out the last seq to delete, then deletes up to it in steps of
// PruneChunk seqs. MaxMessages counts messages only: the last seq to
// delete is that of the newest message beyond the limit (the entries up
// to it target messages no newer). It returns how many entries it
// deleted, also on error.
func (pr Pruner) Prune(ctx context.Context, p store.Retention) (int, error) {
	if p.MaxAge <= 0 && p.MaxMessages <= 0 {
		return 0, nil
	}
	total := 0
	for after := ""; ; {
		rooms, err := pr.ListRooms(ctx, after, listPage)
		if err != nil {
			return total, err
		}
		for _, r := range rooms {
			n, err := pr.pruneRoom(ctx, r, p)
			total += n
			if err != nil {
				return total, err
			}
		}
		if len(rooms) < listPage {
			return total, nil
		}
		after = rooms[len(rooms)-1].Name
	}
}

func (pr Pruner) pruneRoom(ctx context.Context, r store.Room, p store.Retention) (int, error) {
	var upto uint64
	if p.MaxMessages > 0 && r.LastSeq > uint64(p.MaxMessages) { // else it holds too few entries
		var err error
		if upto, err = pr.NewestMessage(ctx, r.Name, p.MaxMessages+1); err != nil {
			return 0, err
		}
	}
	first, old, err := pr.Bounds(ctx, r.Name)
	if err != nil {
		return 0, err
	}
	upto = max(upto, old)
	total := 0
	for after := first; after < upto; after += PruneChunk {
		n, err := pr.Delete(ctx, r.Name, after, min(after+PruneChunk, upto))
		total += int(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
