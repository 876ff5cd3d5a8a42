// Package memory is a Store that keeps everything in process memory. It is
// for tests and for running without a data directory; nothing survives a
// restart.
package memory

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	rooms   map[string]*room
	markers map[markerKey]store.ReadMarker
	closed  bool
	now     func() time.Time
}

type room struct {
	info     store.Room
	entries  []store.Message // the log in seq order; retention leaves holes
	byClient map[clientKey]uint64
	msgs     map[uint64]*msgState // the messages stored, by seq
	members  map[string]bool
}

// msgState is a message as it is now, kept up to date by each entry that
// targets it.
type msgState struct {
	edits     []uint64 // seqs of its edits, oldest first
	editedAt  time.Time
	deleted   bool
	reactions []*emojiState // in the order each emoji first appeared
	mentions  []string      // those of its current text
}

// emojiState is one emoji on a message: who reacted, oldest first.
type emojiState struct {
	emoji string
	users []string
}

func (m *msgState) emoji(e string) (int, *emojiState) {
	for i, es := range m.reactions {
		if es.emoji == e {
			return i, es
		}
	}
	return -1, nil
}

type clientKey struct{ sender, id string }

// New returns an empty store.
func New() *Store {
	return &Store{rooms: make(map[string]*room), markers: make(map[markerKey]store.ReadMarker), now: time.Now}
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
	s.rooms[r.Name] = &room{info: r, byClient: make(map[clientKey]uint64), msgs: make(map[uint64]*msgState), members: members}
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
	if err := m.Check(); err != nil {
		return store.Message{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.room(m.Room)
	if err != nil {
		return store.Message{}, false, err
	}
	key := clientKey{m.Sender, m.ClientMsgID}
	if m.ClientMsgID != "" {
		if seq, ok := r.byClient[key]; ok {
			return *r.entry(seq), true, nil
		}
	}
	if noop, err := store.Decide(m, r.info, r.target(m), r.reactionState(m)); err != nil || noop {
		if noop {
			return m.Noop(), true, nil
		}
		return store.Message{}, false, err
	}
	msg := store.Message{
		Room: m.Room, Seq: r.info.LastSeq + 1, Kind: m.Kind, Sender: m.Sender,
		Body: m.Body, SentAt: s.now().UTC(), ClientMsgID: m.ClientMsgID,
		TargetSeq: m.TargetSeq, ReplyToSeq: m.ReplyToSeq, Emoji: m.Emoji,
	}
	if (m.Kind == store.KindMessage || m.Kind == store.KindEdit) && len(m.Mentions) > 0 {
		msg.Mentions = slices.Clone(m.Mentions)
	}
	if msg.SentAt.Before(r.info.LastMessageAt) {
		msg.SentAt = r.info.LastMessageAt // a room's times never go backwards
	}
	r.entries = append(r.entries, msg)
	if m.ClientMsgID != "" {
		r.byClient[key] = msg.Seq
	}
	r.info.LastSeq, r.info.LastMessageAt = msg.Seq, msg.SentAt
	r.apply(msg)
	return msg, false, nil
}

// entry returns the stored entry with seq, nil if there is none.
func (r *room) entry(seq uint64) *store.Message {
	i, ok := slices.BinarySearchFunc(r.entries, seq, func(m store.Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
	if !ok {
		return nil
	}
	return &r.entries[i]
}

// target returns what the rules need of m's target or reply parent.
func (r *room) target(m store.NewMessage) store.Target {
	seq := m.TargetSeq
	if m.Kind == store.KindMessage {
		seq = m.ReplyToSeq
	}
	st, ok := r.msgs[seq]
	if !ok {
		return store.Target{}
	}
	return store.Target{Found: true, Sender: r.entry(seq).Sender, Deleted: st.deleted}
}

func (r *room) reactionState(m store.NewMessage) store.ReactionState {
	st, ok := r.msgs[m.TargetSeq]
	if !ok || m.Emoji == "" {
		return store.ReactionState{}
	}
	_, es := st.emoji(m.Emoji)
	return store.ReactionState{Present: es != nil, Mine: es != nil && slices.Contains(es.users, m.Sender), Distinct: len(st.reactions)}
}

// apply brings the state of msg's target up to date; Decide has accepted msg.
func (r *room) apply(msg store.Message) {
	if msg.Kind == store.KindMessage {
		r.msgs[msg.Seq] = &msgState{mentions: msg.Mentions}
		return
	}
	st := r.msgs[msg.TargetSeq]
	switch msg.Kind {
	case store.KindEdit:
		st.edits = append(st.edits, msg.Seq)
		st.editedAt = msg.SentAt
		st.mentions = msg.Mentions
	case store.KindDelete:
		st.deleted = true
		st.mentions = nil
		for _, seq := range append(st.edits, msg.TargetSeq) {
			e := r.entry(seq)
			e.Body, e.Mentions = "", nil
		}
	case store.KindReactionAdd:
		if _, es := st.emoji(msg.Emoji); es != nil {
			es.users = append(es.users, msg.Sender)
		} else {
			st.reactions = append(st.reactions, &emojiState{emoji: msg.Emoji, users: []string{msg.Sender}})
		}
	case store.KindReactionRemove:
		i, es := st.emoji(msg.Emoji)
		es.users = slices.DeleteFunc(es.users, func(u string) bool { return u == msg.Sender })
		if len(es.users) == 0 {
			st.reactions = slices.Delete(st.reactions, i, i+1)
		}
	}
}

// Messages implements store.Store.
func (s *Store) Messages(_ context.Context, name string, q store.Query) ([]store.Message, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.room(name)
	if err != nil {
		return nil, err
	}
	var out []store.Message
	for m := range r.walk(q) {
		if len(out) >= q.Limit {
			break
		}
		out = append(out, *m)
	}
	return out, nil
}

// walk yields the entries within q's bounds, in q's order.
func (r *room) walk(q store.Query) func(yield func(*store.Message) bool) {
	return func(yield func(*store.Message) bool) {
		lo, _ := slices.BinarySearchFunc(r.entries, q.After+1, func(m store.Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
		hi := len(r.entries)
		if q.Before != 0 {
			hi, _ = slices.BinarySearchFunc(r.entries, q.Before, func(m store.Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
		}
		if q.After == math.MaxUint64 {
			lo = hi
		}
		for i := range max(hi-lo, 0) {
			j := lo + i
			if q.Descending {
				j = hi - 1 - i
			}
			if !yield(&r.entries[j]) {
				return
			}
		}
	}
}

// History implements store.Store.
func (s *Store) History(_ context.Context, name, viewer string, q store.Query) ([]store.MessageView, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.room(name)
	if err != nil {
		return nil, err
	}
	var out []store.MessageView
	for m := range r.walk(q) {
		if len(out) >= q.Limit {
			break
		}
		if m.Kind == store.KindMessage {
			out = append(out, r.view(*m, viewer))
		}
	}
	return out, nil
}

func (r *room) view(m store.Message, viewer string) store.MessageView {
	st := r.msgs[m.Seq]
	v := store.MessageView{Message: m, EditedAt: st.editedAt, Deleted: st.deleted}
	if n := len(st.edits); n > 0 {
		v.Body = r.entry(st.edits[n-1]).Body
	}
	v.Mentions = st.mentions
	if !st.deleted {
		for _, es := range st.reactions {
			v.Reactions = append(v.Reactions, store.ReactionCount{
				Emoji: es.emoji, Count: len(es.users), Mine: slices.Contains(es.users, viewer),
				Users: slices.Clone(es.users[:min(len(es.users), store.ReactionUsers)]),
			})
		}
	}
	if m.ReplyToSeq != 0 {
		v.ReplyTo = &store.ReplyRef{Seq: m.ReplyToSeq}
		if p, ok := r.msgs[m.ReplyToSeq]; ok {
			pm := r.entry(m.ReplyToSeq)
			body := pm.Body
			if n := len(p.edits); n > 0 {
				body = r.entry(p.edits[n-1]).Body
			}
			v.ReplyTo.Sender, v.ReplyTo.Deleted, v.ReplyTo.Snippet = pm.Sender, p.deleted, store.Snippet(body)
		}
	}
	return v
}

// VisibleRooms implements store.Store.
func (s *Store) VisibleRooms(_ context.Context, user, afterName string, limit int) ([]store.Room, error) {
	rooms, err := s.listRooms(afterName, limit, func(r *room) bool { return r.info.Visibility == store.Public || r.members[user] })
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range rooms {
		if r, ok := s.rooms[rooms[i].Name]; ok {
			rooms[i].Read = s.readStateLocked(r, user)
		}
	}
	return rooms, nil
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
		n += r.prune(p, cutoff)
	}
	return n, nil
}

// prune deletes the entries up to the newest one that p condemns, and
// every entry that targets a message among them.
func (r *room) prune(p store.Retention, cutoff time.Time) int {
	var upto uint64
	if p.MaxMessages > 0 && len(r.msgs) > p.MaxMessages {
		excess := len(r.msgs) - p.MaxMessages
		for _, m := range r.entries {
			if m.Kind == store.KindMessage {
				if excess--; excess == 0 {
					upto = m.Seq
					break
				}
			}
		}
	}
	for _, m := range r.entries {
		if p.MaxAge <= 0 || !m.SentAt.Before(cutoff) {
			break
		}
		upto = max(upto, m.Seq)
	}
	if upto == 0 {
		return 0
	}
	before := len(r.entries)
	r.entries = slices.DeleteFunc(r.entries, func(m store.Message) bool {
		gone := m.Seq <= upto || (m.TargetSeq != 0 && m.TargetSeq <= upto)
		if gone {
			delete(r.msgs, m.Seq)
			if m.ClientMsgID != "" {
				delete(r.byClient, clientKey{m.Sender, m.ClientMsgID})
			}
		}
		return gone
	})
	return before - len(r.entries)
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
