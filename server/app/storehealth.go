package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/server/internal/store"
)

// storeHealth follows what the store's answers say about its database:
// damaged (store.ErrCorrupt; until restart) or full (store.ErrFull; until
// a write succeeds). It logs each change once, and onChange updates the
// server's health.
//
// A damaged database makes the server NOT_SERVING and refuse writes: a
// message acknowledged now would be lost when the operator restores the
// backup. Full storage leaves it SERVING, degraded: reads, live streams and
// presence still work, and taking the node out of rotation would stop the
// very writes whose success shows that space is back (docs/operations.md).
type storeHealth struct {
	log      *slog.Logger
	where    string // the database, for logs: a file or "postgres"
	advice   string // what an operator should do about damage
	onChange func()

	mu      sync.Mutex // orders the episodes' log lines
	damaged atomic.Bool
	full    atomic.Bool
}

// errDamagedRefused answers a write once the database is known to be damaged.
var errDamagedRefused = fmt.Errorf("%w: refusing to write to it until it is repaired", store.ErrCorrupt)

// observe notes what err says about the database.
func (h *storeHealth) observe(err error) {
	switch {
	case err == nil:
	case errors.Is(err, store.ErrCorrupt):
		h.setDamaged(err)
	case errors.Is(err, store.ErrFull):
		h.setFull(true, err)
	}
}

// wrote notes the outcome of a write: one that stored something ends a
// full episode. (A duplicate append stores nothing, and succeeds on a full
// disk.)
func (h *storeHealth) wrote(err error, stored bool) error {
	if err == nil && stored && h.full.Load() {
		h.setFull(false, nil)
	}
	h.observe(err)
	return err
}

// refuse returns errDamagedRefused if writes must stop.
func (h *storeHealth) refuse() error {
	if h.damaged.Load() {
		return errDamagedRefused
	}
	return nil
}

func (h *storeHealth) setDamaged(err error) {
	if errors.Is(err, errDamagedRefused) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.damaged.Swap(true) {
		return
	}
	h.log.Error("the database is damaged: reporting NOT_SERVING and refusing writes until it is repaired and parleyd restarted",
		"db", h.where, "err", err, "action", h.advice)
	h.onChange()
}

func (h *storeHealth) setFull(full bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.full.Swap(full) == full {
		return
	}
	if full {
		h.log.Error("the server's storage is full: sends and room changes fail until space is freed; reads and live streams go on",
			"db", h.where, "err", err)
	} else {
		h.log.Info("storage writable again: sends are stored", "db", h.where)
	}
	h.onChange()
}

// detail describes the database's state for /healthz: "" when sound.
func (h *storeHealth) detail() string {
	switch {
	case h.damaged.Load():
		return "database damaged: " + h.advice
	case h.full.Load():
		return "degraded: the server's storage is full: sends fail until space is freed"
	}
	return ""
}

// collectors are the gauges parley_store_damaged and parley_store_full.
func (h *storeHealth) collectors() []prometheus.Collector {
	gauge := func(name, help string, b *atomic.Bool) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if b.Load() {
				return 1
			}
			return 0
		})
	}
	return []prometheus.Collector{
		gauge("parley_store_damaged", "1 once the store has reported its database damaged (until restart), else 0.", &h.damaged),
		gauge("parley_store_full", "1 while the store reports its storage full (until a write succeeds), else 0.", &h.full),
	}
}

// watchedStore is a store.Store whose answers storeHealth sees. It embeds
// the store, so a method it does not wrap passes through unwatched.
type watchedStore struct {
	store.Store
	h *storeHealth
}

// CreateRoom implements store.Store.
func (w watchedStore) CreateRoom(ctx context.Context, r store.Room) (store.Room, error) {
	if err := w.h.refuse(); err != nil {
		return store.Room{}, err
	}
	r, err := w.Store.CreateRoom(ctx, r)
	if errors.Is(err, store.ErrRoomExists) {
		return r, err
	}
	return r, w.h.wrote(err, true)
}

// Append implements store.Store.
func (w watchedStore) Append(ctx context.Context, m store.NewMessage) (store.Message, bool, error) {
	if err := w.h.refuse(); err != nil {
		return store.Message{}, false, err
	}
	msg, dup, err := w.Store.Append(ctx, m)
	return msg, dup, w.h.wrote(err, !dup)
}

// StartAppend implements store.Store.
func (w watchedStore) StartAppend(ctx context.Context, m store.NewMessage) func() (store.Message, bool, error) {
	if err := w.h.refuse(); err != nil {
		return store.Answered(store.Message{}, false, err)
	}
	wait := w.Store.StartAppend(ctx, m)
	return func() (store.Message, bool, error) {
		msg, dup, err := wait()
		return msg, dup, w.h.wrote(err, !dup)
	}
}

// AddMember implements store.Store.
func (w watchedStore) AddMember(ctx context.Context, room, user string) error {
	if err := w.h.refuse(); err != nil {
		return err
	}
	return w.h.wrote(w.Store.AddMember(ctx, room, user), true)
}

// RemoveMember implements store.Store.
func (w watchedStore) RemoveMember(ctx context.Context, room, user string) error {
	if err := w.h.refuse(); err != nil {
		return err
	}
	return w.h.wrote(w.Store.RemoveMember(ctx, room, user), true)
}

// Prune implements store.Store.
func (w watchedStore) Prune(ctx context.Context, p store.Retention) (int, error) {
	if err := w.h.refuse(); err != nil {
		return 0, err
	}
	n, err := w.Store.Prune(ctx, p)
	w.h.observe(err)
	return n, err
}

// Room implements store.Store.
func (w watchedStore) Room(ctx context.Context, name string) (store.Room, error) {
	r, err := w.Store.Room(ctx, name)
	w.h.observe(err)
	return r, err
}

// ListRooms implements store.Store.
func (w watchedStore) ListRooms(ctx context.Context, afterName string, limit int) ([]store.Room, error) {
	rs, err := w.Store.ListRooms(ctx, afterName, limit)
	w.h.observe(err)
	return rs, err
}

// VisibleRooms implements store.Store.
func (w watchedStore) VisibleRooms(ctx context.Context, user, afterName string, limit int) ([]store.Room, error) {
	rs, err := w.Store.VisibleRooms(ctx, user, afterName, limit)
	w.h.observe(err)
	return rs, err
}

// Messages implements store.Store.
func (w watchedStore) Messages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	ms, err := w.Store.Messages(ctx, room, q)
	w.h.observe(err)
	return ms, err
}

// History implements store.Store.
func (w watchedStore) History(ctx context.Context, room, viewer string, q store.Query) ([]store.MessageView, error) {
	vs, err := w.Store.History(ctx, room, viewer, q)
	w.h.observe(err)
	return vs, err
}

// IsMember implements store.Store.
func (w watchedStore) IsMember(ctx context.Context, room, user string) (bool, error) {
	ok, err := w.Store.IsMember(ctx, room, user)
	w.h.observe(err)
	return ok, err
}

// Members implements store.Store.
func (w watchedStore) Members(ctx context.Context, room string) ([]string, error) {
	ms, err := w.Store.Members(ctx, room)
	w.h.observe(err)
	return ms, err
}

// newStoreHealth follows the store cfg names; onChange updates the
// server's health.
func newStoreHealth(cfg Config, log *slog.Logger, onChange func()) *storeHealth {
	where := storeKind(cfg.Store)
	if cfg.Store == "sqlite" {
		where = sqlitePath(cfg)
	}
	return &storeHealth{log: log, where: where, advice: damageAdvice(cfg), onChange: onChange}
}

// sqlitePath is the embedded store's database file.
func sqlitePath(cfg Config) string { return filepath.Join(cfg.DataDir, "parley.db") }

// damageAdvice says what an operator should do about a damaged database.
func damageAdvice(cfg Config) string {
	if isPostgresURL(cfg.Store) {
		return "see PostgreSQL's log; restore the database from a backup or repair it (REINDEX a damaged index), then restart parleyd"
	}
	return fmt.Sprintf("stop parleyd; restore %s from a backup, or salvage what is readable (docs/operations.md, \"A damaged database\"); then start parleyd again", sqlitePath(cfg))
}

// checkStore runs the embedded store's integrity check, bounded by
// cfg.DBCheckTimeout, and reports what it finds: damage through
// storeHealth, a check cut short or failed in the log.
func (s *Server) checkStore(ctx context.Context) {
	c, ok := s.db.(interface{ Check(context.Context) error })
	if !ok || s.cfg.DBCheckTimeout < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DBCheckTimeout)
	defer cancel()
	start := time.Now()
	err := c.Check(ctx)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil:
		s.log.Info("database check passed", "db", s.storeHlth.where, "took", took)
	case errors.Is(err, store.ErrCorrupt):
		s.storeHlth.observe(err)
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("database check ran out of time: the rest of the database is unchecked",
			"db", s.storeHlth.where, "timeout", s.cfg.DBCheckTimeout,
			"action", "raise --db-check-timeout, or check offline with: sqlite3 "+s.storeHlth.where+" 'PRAGMA quick_check'")
	default:
		s.log.Error("database check failed", "db", s.storeHlth.where, "err", err)
	}
}
