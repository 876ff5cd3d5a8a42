// Package memory is a Store that keeps everything in process memory. It is
// for tests and for running without a data directory; nothing survives a
// restart.
package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu     sync.RWMutex
	rooms  map[string]*room
	closed bool
	now    func() time.Time
}

type room struct {
	info     store.Room
	messages []store.Message // messages[i].Seq == pruned+i+1
	pruned   uint64          // seqs up to this one were removed by retention
	byClient map[clientKey]uint64
	members  map[string]bool
}

type clientKey struct{ sender, id string }

// New returns an empty store.
func New() *Store {
	return &Store{rooms: make(map[string]*room), now: time.Now}
}

var _ store.Store = (*Store)(nil)

// CreateRoom implements store.Store.
func (s *Store) CreateRoom(_ context.Context, r store.Room) (store.Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Room{}, store.ErrClosed
	}
	if _, ok := s.rooms[r.Name]; ok {
		return store.Room{}, fmt.Errorf("create room %q: %w", r.Name, store.ErrRoomExists)
	}
	r.CreatedAt = s.now().UTC()
	r.LastSeq, r.LastMessageAt = 0, time.Time{}
	members := make(map[string]bool)
	if r.Visibility != store.Public {
		members[r.CreatedBy] = true
		for _, m := range r.Members {
			members[m] = true
		}
	}
	r.Members = nil
	s.rooms[r.Name] = &room{info: r, byClient: make(map[clientKey]uint64), members: members}
	return r, nil
}

// Room implements store.Store.
func (s *Store) Room(_ context.Context, name string) (store.Room, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.room(name)
	if err != nil {
		return store.Room{}, err
	}
	return r.info, nil
}

func (s *Store) room(name string) (*room, error) {
	if s.closed {
		return nil, store.ErrClosed
	}
	r, ok := s.rooms[name]
	if !ok {
		return nil, fmt.Errorf("room %q: %w", name, store.ErrRoomNotFound)
	}
	return r, nil
}

// ListRooms implements store.Store.
func (s *Store) ListRooms(_ context.Context, afterName string, limit int) ([]store.Room, error) {
	return s.listRooms(afterName, limit, func(*room) bool { return true })
}

// listRooms returns up to limit rooms after afterName that keep accepts,
// ordered by name. A limit below one returns nothing rather than
// panicking.
func (s *Store) listRooms(afterName string, limit int, keep func(*room) bool) ([]store.Room, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var out []store.Room
	for name, r := range s.rooms {
		if name > afterName && keep(r) {
			out = append(out, r.info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) > max(limit, 0) {
		out = out[:max(limit, 0)]
	}
	return out, nil
}

// StartAppend implements store.Store: the memory store appends at once, so
// wait only returns the result.
func (s *Store) StartAppend(ctx context.Context, m store.NewMessage) func() (store.Message, bool, error) {
	return store.Answered(s.Append(ctx, m))
}

// Append implements store.Store.
func (s *Store) Append(_ context.Context, m store.NewMessage) (store.Message, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.room(m.Room)
	if err != nil {
		return store.Message{}, false, err
	}
	key := clientKey{m.Sender, m.ClientMsgID}
	if m.ClientMsgID != "" {
		if seq, ok := r.byClient[key]; ok && seq > r.pruned {
			return r.messages[seq-r.pruned-1], true, nil
		}
	}
	msg := store.Message{
		Room: m.Room, Seq: r.info.LastSeq + 1, Sender: m.Sender,
		Body: m.Body, SentAt: s.now().UTC(), ClientMsgID: m.ClientMsgID,
	}
	r.messages = append(r.messages, msg)
	if m.ClientMsgID != "" {
		r.byClient[key] = msg.Seq
	}
	r.info.LastSeq, r.info.LastMessageAt = msg.Seq, msg.SentAt
	return msg, false, nil
}

// Messages implements store.Store.
func (s *Store) Messages(_ context.Context, name string, q store.Query) ([]store.Message, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.room(name)
	if err != nil {
		return nil, err
	}
	lo, hi := max(q.After, r.pruned)+1, r.info.LastSeq // inclusive seq range
	if q.Before != 0 && q.Before-1 < hi {
		hi = q.Before - 1
	}
	var out []store.Message
	for i := 0; i < q.Limit && lo <= hi; i++ {
		if q.Descending {
			out = append(out, r.messages[hi-r.pruned-1])
			hi--
		} else {
			out = append(out, r.messages[lo-r.pruned-1])
			lo++
		}
	}
	return out, nil
}

// VisibleRooms implements store.Store.
func (s *Store) VisibleRooms(_ context.Context, user, afterName string, limit int) ([]store.Room, error) {
	return s.listRooms(afterName, limit, func(r *room) bool { return r.info.Visibility == store.Public || r.members[user] })
}

// AddMember implements store.Store.
func (s *Store) AddMember(_ context.Context, name, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.room(name)
	if err != nil {
		return err
	}
	r.members[user] = true
	return nil
}

// RemoveMember implements store.Store.
func (s *Store) RemoveMember(_ context.Context, name, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.room(name)
	if err != nil {
		return err
	}
	delete(r.members, user)
	return nil
}

// IsMember implements store.Store.
func (s *Store) IsMember(_ context.Context, name, user string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, store.ErrClosed
	}
	r, ok := s.rooms[name]
	return ok && r.members[user], nil
}

// Members implements store.Store.
func (s *Store) Members(_ context.Context, name string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.room(name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(r.members))
	for m := range r.members {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

// Prune implements store.Store.
func (s *Store) Prune(_ context.Context, p store.Retention) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	cutoff := s.now().Add(-p.MaxAge)
	n := 0
	for _, r := range s.rooms {
		drop := 0
		for drop < len(r.messages) &&
			((p.MaxMessages > 0 && len(r.messages)-drop > p.MaxMessages) ||
				(p.MaxAge > 0 && r.messages[drop].SentAt.Before(cutoff))) {
			drop++
		}
		for _, m := range r.messages[:drop] {
			if m.ClientMsgID != "" {
				delete(r.byClient, clientKey{m.Sender, m.ClientMsgID})
			}
		}
		r.messages = slices.Delete(r.messages, 0, drop)
		r.pruned += uint64(drop)
		n += drop
	}
	return n, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
