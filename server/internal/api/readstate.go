package api

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// Read state: a user's read marker per room, moved by a mark_read frame,
// MarkRead or POST /v1/rooms/{room}/read, and stored lazily by the hub
// (see hub.Hub.MarkRead); the counts a room list needs; receipts in small
// rooms. docs/clients.md tells clients how to use them.

// MarkRead implements parleyv1.ChatServiceServer.
func (s *Service) MarkRead(ctx context.Context, req *parleyv1.MarkReadRequest) (*parleyv1.MarkReadResponse, error) {
	m, err := s.markRead(ctx, identity(ctx).User, req.GetRoom(), req.GetSeq(), nil)
	if err != nil {
		return nil, err
	}
	return &parleyv1.MarkReadResponse{Marker: m}, nil
}

// maxCountScan is the most messages after a new marker that markRead
// counts itself (one page of history); beyond it the marker is stored at
// once and the store counts.
const maxCountScan = 200

// markRead moves user's read marker in room forward to seq, clamped to
// the room's head, and returns the marker as it is then, with user's
// counts at it. A seq at or below the marker (stored or pending) changes
// nothing. The room must be one user may read, joined or not: any other
// gets the answer of a room that does not exist. from is the connection
// it came on, nil for a unary call.
//
// Most marks are answered by the hub from memory (hub.Hub.MarkReadLive);
// the rest read the user's read state from the store, and count from
// its history.
func (s *Service) markRead(ctx context.Context, user, room string, seq uint64, from *hub.Conn) (*parleyv1.ReadMarker, error) {
	if err := validateRoom(room); err != nil {
		return nil, err
	}
	if seq == 0 {
		return nil, invalidf("seq must be the seq of the last entry read, 1 or more (a read marker never moves back)")
	}
	if _, err := s.access(ctx, user, room); err != nil {
		return nil, err
	}
	p, pending := s.cfg.Hub.PendingRead(user, room)
	if pending && seq <= p.Seq && p.HeadSeq != 0 {
		// Marked as far already, and not stored yet: a client repeating
		// its mark costs no store read.
		return readMarkToProto(room, &p), nil
	}
	live, ok, err := s.cfg.Hub.MarkReadLive(ctx, user, room, seq, from)
	if err != nil {
		return nil, err
	}
	if ok {
		return readMarkToProto(room, &live), nil
	}
	rs, err := s.readState(ctx, user, room)
	if err != nil {
		return nil, err
	}
	s.cfg.Hub.NoteReadMark(user, room, rs.LastReadSeq)
	cur := hub.ReadMark{Seq: rs.LastReadSeq, Unread: rs.Unread, Mentions: rs.Mentions, HeadSeq: rs.HeadSeq}
	if pending && p.Seq > cur.Seq {
		cur = p
	}
	if target := min(seq, rs.HeadSeq); target > cur.Seq {
		if cur, err = s.countAt(ctx, user, room, target, rs.HeadSeq); err != nil {
			return nil, err
		}
		if err := s.cfg.Hub.MarkRead(ctx, user, room, cur, from); err != nil {
			return nil, err
		}
	}
	if cur.Seq > 0 && cur.HeadSeq == 0 { // not counted: let the store count
		return s.storedMarker(ctx, user, room)
	}
	return readMarkToProto(room, &cur), nil
}

// readState is the store's ReadState with NOT_FOUND for a room that went
// away since the access check.
func (s *Service) readState(ctx context.Context, user, room string) (store.ReadState, error) {
	rs, err := s.cfg.Store.ReadState(ctx, user, room)
	if errors.Is(err, store.ErrRoomNotFound) {
		return store.ReadState{}, roomNotFound(room)
	}
	return rs, err
}

// countAt returns a marker at seq with user's counts after it, up to
// head: none at the head; otherwise counted from the messages in
// between, if there are at most maxCountScan of them, else left uncounted
// (HeadSeq 0).
func (s *Service) countAt(ctx context.Context, user, room string, seq, head uint64) (hub.ReadMark, error) {
	m := hub.ReadMark{Seq: seq, HeadSeq: head}
	if seq >= head {
		return m, nil
	}
	views, err := s.cfg.Store.History(ctx, room, user, store.Query{After: seq, Before: head + 1, Limit: maxCountScan})
	if err != nil {
		return hub.ReadMark{}, err
	}
	if len(views) == maxCountScan {
		return hub.ReadMark{Seq: seq}, nil
	}
	direct := isDirectRoomName(room)
	for _, v := range views {
		if v.Deleted || v.Sender == user {
			continue
		}
		m.Unread++
		if direct || slices.Contains(v.Mentions, user) {
			m.Mentions++
		}
	}
	return m, nil
}

// storedMarker stores the pending markers and answers with user's read
// state in room as the store counts it. It is the slow path of a mark in
// a long unread stretch, which is rare: a reader marks near the head.
func (s *Service) storedMarker(ctx context.Context, user, room string) (*parleyv1.ReadMarker, error) {
	if err := s.cfg.Hub.FlushReadMarks(ctx); err != nil {
		return nil, err
	}
	rs, err := s.readState(ctx, user, room)
	if err != nil {
		return nil, err
	}
	return &parleyv1.ReadMarker{Room: room, Seq: rs.LastReadSeq, UnreadCount: int32(rs.Unread),
		MentionCount: int32(rs.Mentions), HeadSeq: rs.HeadSeq}, nil
}

// markReadFrame answers a mark_read frame.
func (sess *session) markRead(ctx context.Context, f *parleyv1.JoinRequest_MarkRead, reply *parleyv1.Reply) error {
	m, err := sess.s.markRead(ctx, sess.user, f.GetRoom(), f.GetSeq(), sess.conn)
	reply.ReadMarker = m
	return err
}

// ListReceipts implements parleyv1.ChatServiceServer.
func (s *Service) ListReceipts(ctx context.Context, req *parleyv1.ListReceiptsRequest) (*parleyv1.ListReceiptsResponse, error) {
	room := req.GetRoom()
	if _, err := s.access(ctx, identity(ctx).User, room); err != nil {
		return nil, err
	}
	ms, err := s.cfg.Hub.Receipts(ctx, room)
	if errors.Is(err, hub.ErrTooManyReaders) {
		return nil, s.noReceipts(room)
	}
	if err != nil {
		return nil, err
	}
	resp := &parleyv1.ListReceiptsResponse{Receipts: make([]*parleyv1.Receipt, len(ms))}
	for i, m := range ms {
		resp.Receipts[i] = markerToReceipt(m)
	}
	return resp, nil
}

// noReceipts is the answer for receipts of a room too big to have them.
func (s *Service) noReceipts(room string) error {
	n := s.cfg.Hub.ReceiptsMaxMembers()
	if n < 0 {
		return errorf(errPrecondition, "this server keeps no receipts (--receipts-max-members is negative); your own read marker is in ListRooms' last_read_seq")
	}
	return errorf(errPrecondition, "room %q has more than %d readers, and receipts (\"seen by\") are kept only for rooms with at most %d "+
		"(a private room's members; for a public room, the users who marked it read); your own read marker is in ListRooms' last_read_seq", room, n, n)
}

// joinedTail encodes what a joiner alone is told with a room's joined
// state (see hub.JoinOptions.Tail): their read marker and, in a small
// room, its receipts. It is a JoinResponse whose joined event holds only
// those fields: decoded after the shared state, protobuf merges it in.
func (s *Service) joinedTail(ctx context.Context, user, room string) ([]byte, error) {
	flushes := s.cfg.Hub.ReadMarkFlushes()
	j, err := s.storedTail(ctx, user, room)
	if err != nil {
		return nil, err
	}
	p, pending := s.cfg.Hub.PendingRead(user, room)
	if s.cfg.Hub.ReadMarkFlushes() != flushes {
		// A flush stored markers after the read began, and PendingRead may
		// no longer have them: read them from the store.
		if j, err = s.storedTail(ctx, user, room); err != nil {
			return nil, err
		}
	}
	if pending && p.Seq > j.LastReadSeq {
		j.LastReadSeq = p.Seq
	}
	if j.LastReadSeq == 0 && len(j.Receipts) == 0 {
		return nil, nil
	}
	return proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Joined{Joined: j}})
}

// storedTail is joinedTail's read of the store: the room's receipts, if
// it is small, and user's stored marker.
func (s *Service) storedTail(ctx context.Context, user, room string) (*parleyv1.Joined, error) {
	j := &parleyv1.Joined{}
	ms, err := s.cfg.Hub.Receipts(ctx, room)
	switch {
	case err == nil:
		j.Receipts = make([]*parleyv1.Receipt, len(ms))
		for i, m := range ms {
			j.Receipts[i] = markerToReceipt(m)
			if m.User == user {
				j.LastReadSeq = m.Seq
			}
		}
	case errors.Is(err, hub.ErrTooManyReaders):
		rs, err := s.readState(ctx, user, room)
		if err != nil {
			return nil, err
		}
		j.LastReadSeq = rs.LastReadSeq
	default:
		return nil, err
	}
	return j, nil
}

// visibleRooms is the store's VisibleRooms, with the markers user marked
// and the hub has not stored yet stored first, so that a room list read
// right after a mark counts from it.
func (s *Service) visibleRooms(ctx context.Context, user, after string, limit int) ([]store.Room, error) {
	flushes := s.cfg.Hub.ReadMarkFlushes()
	rooms, err := s.cfg.Store.VisibleRooms(ctx, user, after, limit)
	if err != nil {
		return nil, err
	}
	for _, r := range rooms {
		if p, ok := s.cfg.Hub.PendingRead(user, r.Name); ok && p.Seq > r.Read.LastReadSeq {
			if err := s.cfg.Hub.FlushReadMarks(ctx); err != nil {
				return nil, err
			}
			return s.cfg.Store.VisibleRooms(ctx, user, after, limit)
		}
	}
	if s.cfg.Hub.ReadMarkFlushes() != flushes {
		// A flush stored markers after the read began, and PendingRead no
		// longer has them: read them from the store.
		return s.cfg.Store.VisibleRooms(ctx, user, after, limit)
	}
	return rooms, nil
}
