package api

import (
	"context"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// A send appends an entry of any kind to a room's log: a message, or an
// edit, delete or reaction that names one. Every kind takes the same path
// (edge checks, the user's send rate, the store, the room's delivery), so
// every guarantee of a message holds for the others; only the checks of
// the entry's fields and the answer differ by kind.

// checkEntry checks the fields of an entry other than its room, once, at
// the edge: the store then checks only the rules of the log.
func (s *Service) checkEntry(m store.NewMessage) error {
	if m.Kind != store.KindMessage && m.TargetSeq == 0 {
		return validateTarget(m.Room, m.TargetSeq)
	}
	switch m.Kind {
	case store.KindMessage, store.KindEdit:
		return s.validatePost(m.Body, m.ClientMsgID)
	case store.KindReactionAdd, store.KindReactionRemove:
		if err := validateEmoji(m.Emoji); err != nil {
			return err
		}
	}
	return validateClientMsgID(m.ClientMsgID)
}

// sendEntry checks and stores an entry sent by a unary call, and delivers it.
func (s *Service) sendEntry(ctx context.Context, m store.NewMessage) (hub.Sent, error) {
	if err := validateRoom(m.Room); err != nil {
		return hub.Sent{}, err
	}
	if err := s.checkEntry(m); err != nil {
		return hub.Sent{}, err
	}
	held, err := s.holdForSend(ctx, m.Sender, m.Room)
	if err != nil {
		return hub.Sent{}, err
	}
	wait, err := s.startSend(ctx, held, m, true, nil)
	if err != nil {
		return hub.Sent{}, err
	}
	return wait()
}

// kindOf refuses the answer to a send whose client_msg_id found an entry
// of another kind: the id was used already, and what this send asked for
// was not done.
func kindOf(m store.NewMessage, sent hub.Sent) error {
	if !sent.Duplicate || sent.Message.Seq == 0 || sent.Message.Kind == m.Kind {
		return nil
	}
	return errorf(errExists, "client_msg_id %q was used already, for the %s at seq %d; nothing was stored: use a new id for this %s",
		truncate(m.ClientMsgID, 80), sent.Message.Kind, sent.Message.Seq, m.Kind)
}

// frameEntry returns the entry a Join frame sends, and false for a frame
// that sends none.
func frameEntry(req *parleyv1.JoinRequest, user string) (store.NewMessage, bool) {
	switch f := req.GetFrame().(type) {
	case *parleyv1.JoinRequest_Send:
		p := f.Send
		return store.NewMessage{Room: p.GetRoom(), Sender: user, Body: p.GetBody(), ClientMsgID: p.GetClientMsgId(), ReplyToSeq: p.GetReplyToSeq()}, true
	case *parleyv1.JoinRequest_Edit:
		e := f.Edit
		return store.NewMessage{Room: e.GetRoom(), Kind: store.KindEdit, Sender: user, TargetSeq: e.GetSeq(), Body: e.GetBody(), ClientMsgID: e.GetClientMsgId()}, true
	case *parleyv1.JoinRequest_Delete:
		d := f.Delete
		return store.NewMessage{Room: d.GetRoom(), Kind: store.KindDelete, Sender: user, TargetSeq: d.GetSeq(), ClientMsgID: d.GetClientMsgId()}, true
	case *parleyv1.JoinRequest_React_:
		return reactEntry(f.React, store.KindReactionAdd, user), true
	case *parleyv1.JoinRequest_Unreact:
		return reactEntry(f.Unreact, store.KindReactionRemove, user), true
	}
	return store.NewMessage{}, false
}

func reactEntry(r *parleyv1.JoinRequest_React, kind store.Kind, user string) store.NewMessage {
	return store.NewMessage{Room: r.GetRoom(), Kind: kind, Sender: user, TargetSeq: r.GetSeq(), Emoji: r.GetEmoji(), ClientMsgID: r.GetClientMsgId()}
}

// EditMessage implements parleyv1.ChatServiceServer.
func (s *Service) EditMessage(ctx context.Context, req *parleyv1.EditMessageRequest) (*parleyv1.EditMessageResponse, error) {
	sent, err := s.sendEntry(ctx, store.NewMessage{Room: req.GetRoom(), Kind: store.KindEdit, Sender: identity(ctx).User,
		TargetSeq: req.GetSeq(), Body: req.GetBody(), ClientMsgID: req.GetClientMsgId()})
	if err != nil {
		return nil, err
	}
	return &parleyv1.EditMessageResponse{Edit: editToProto(sent.Message)}, nil
}

// DeleteMessage implements parleyv1.ChatServiceServer.
func (s *Service) DeleteMessage(ctx context.Context, req *parleyv1.DeleteMessageRequest) (*parleyv1.DeleteMessageResponse, error) {
	sent, err := s.sendEntry(ctx, store.NewMessage{Room: req.GetRoom(), Kind: store.KindDelete, Sender: identity(ctx).User,
		TargetSeq: req.GetSeq(), ClientMsgID: req.GetClientMsgId()})
	if err != nil {
		return nil, err
	}
	if sent.Message.Seq == 0 { // 0: deleted already
		return &parleyv1.DeleteMessageResponse{}, nil
	}
	return &parleyv1.DeleteMessageResponse{Delete: deleteToProto(sent.Message)}, nil
}

// AddReaction implements parleyv1.ChatServiceServer.
func (s *Service) AddReaction(ctx context.Context, req *parleyv1.AddReactionRequest) (*parleyv1.AddReactionResponse, error) {
	sent, err := s.sendEntry(ctx, store.NewMessage{Room: req.GetRoom(), Kind: store.KindReactionAdd, Sender: identity(ctx).User,
		TargetSeq: req.GetSeq(), Emoji: req.GetEmoji(), ClientMsgID: req.GetClientMsgId()})
	if err != nil {
		return nil, err
	}
	if sent.Message.Seq == 0 { // 0: there already
		return &parleyv1.AddReactionResponse{}, nil
	}
	return &parleyv1.AddReactionResponse{Reaction: reactionToProto(sent.Message)}, nil
}

// RemoveReaction implements parleyv1.ChatServiceServer.
func (s *Service) RemoveReaction(ctx context.Context, req *parleyv1.RemoveReactionRequest) (*parleyv1.RemoveReactionResponse, error) {
	sent, err := s.sendEntry(ctx, store.NewMessage{Room: req.GetRoom(), Kind: store.KindReactionRemove, Sender: identity(ctx).User,
		TargetSeq: req.GetSeq(), Emoji: req.GetEmoji(), ClientMsgID: req.GetClientMsgId()})
	if err != nil {
		return nil, err
	}
	if sent.Message.Seq == 0 { // 0: not there
		return &parleyv1.RemoveReactionResponse{}, nil
	}
	return &parleyv1.RemoveReactionResponse{Reaction: reactionToProto(sent.Message)}, nil
}
