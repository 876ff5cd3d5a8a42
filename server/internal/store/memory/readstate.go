package memory

import (
	"context"
	"slices"
	"strings"

	"github.com/parleychat/parley/server/internal/store"
)

type markerKey struct{ room, user string }

// SetReadMarkers implements store.Store. A marker given twice is
// answered twice with the marker as it is after the call, as the SQL
// stores do.
func (s *Store) SetReadMarkers(_ context.Context, ms []store.ReadMarker) ([]store.ReadMarker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	now := s.now().UTC()
	for _, m := range ms {
		r, ok := s.rooms[m.Room]
		if !ok {
			continue
		}
		k := markerKey{m.Room, m.User}
		if seq := min(m.Seq, r.info.LastSeq); seq > s.markers[k].Seq {
			s.markers[k] = store.ReadMarker{Room: m.Room, User: m.User, Seq: seq, ReadAt: now}
		}
	}
	out := make([]store.ReadMarker, 0, len(ms))
	for _, m := range ms {
		if _, ok := s.rooms[m.Room]; !ok {
			continue
		}
		cur, ok := s.markers[markerKey{m.Room, m.User}]
		if !ok {
			cur = store.ReadMarker{Room: m.Room, User: m.User}
		}
		out = append(out, cur)
	}
	return out, nil
}

// ReadState implements store.Store.
func (s *Store) ReadState(_ context.Context, user, name string) (store.ReadState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, err := s.room(name)
	if err != nil {
		return store.ReadState{}, err
	}
	return s.readStateLocked(r, user), nil
}

// readStateLocked counts by walking the log after the marker: the memory
// store is for tests and small runs, where a scan costs little.
func (s *Store) readStateLocked(r *room, user string) store.ReadState {
	rs := store.ReadState{LastReadSeq: s.markers[markerKey{r.info.Name, user}].Seq, HeadSeq: r.info.LastSeq}
	for m := range r.walk(store.Query{After: rs.LastReadSeq}) {
		st := r.msgs[m.Seq]
		if m.Kind != store.KindMessage || m.Sender == user || st.deleted {
			continue
		}
		rs.Unread++
		if r.info.Visibility == store.Direct || slices.Contains(st.mentions, user) {
			rs.Mentions++
		}
	}
	return rs
}

// ReadMarkers implements store.Store.
func (s *Store) ReadMarkers(_ context.Context, name string, limit int) ([]store.ReadMarker, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.room(name); err != nil {
		return nil, err
	}
	var out []store.ReadMarker
	for k, m := range s.markers {
		if k.room == name {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b store.ReadMarker) int { return strings.Compare(a.User, b.User) })
	return out[:min(len(out), max(limit, 0))], nil
}
