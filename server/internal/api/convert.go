package api

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// EncodeEvent is the hub's Encoder: it marshals an event as a JoinResponse.
// JoinResponse and SubscribeResponse number their shared events alike, so
// the same bytes are a valid frame on both kinds of stream.
func EncodeEvent(ev hub.Event) ([]byte, error) {
	b, err := proto.Marshal(eventToProto(ev))
	if err != nil {
		return nil, fmt.Errorf("marshal %v event: %w", ev.Kind, err)
	}
	return b, nil
}

func eventToProto(ev hub.Event) *parleyv1.JoinResponse {
	switch ev.Kind {
	case hub.EventJoined:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Joined{Joined: &parleyv1.Joined{
			Room: ev.Room, HeadSeq: ev.HeadSeq, Presence: presenceToProto(ev.Presence),
			OnlineCount: int32(ev.OnlineCount), PresenceNextPageToken: presenceToken(ev.Room, ev.PresenceNext),
		}}}
	case hub.EventMessage:
		return entryToProto(ev.Message)
	case hub.EventReplayed:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Replayed{Replayed: &parleyv1.Replayed{
			Room: ev.Room, ThroughSeq: ev.ThroughSeq,
		}}}
	case hub.EventPresenceDiff:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_PresenceDiff{PresenceDiff: &parleyv1.PresenceDiff{
			Room: ev.Room, Joins: presenceToProto(ev.Joins), Leaves: presenceToProto(ev.Leaves),
			OnlineCount: int32(ev.OnlineCount),
		}}}
	case hub.EventTyping:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Typing{Typing: &parleyv1.Typing{
			Room: ev.Room, User: ev.User, Active: ev.Active,
		}}}
	case hub.EventReadMarker:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_ReadMarker{ReadMarker: readMarkToProto(ev.Room, ev.Read)}}
	case hub.EventReceipts:
		rs := &parleyv1.Receipts{Room: ev.Room, Receipts: make([]*parleyv1.Receipt, len(ev.Receipts))}
		for i, r := range ev.Receipts {
			rs.Receipts[i] = receiptToProto(ev.Room, r.User, r.Seq, r.ReadAt)
		}
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Receipts{Receipts: rs}}
	case hub.EventRoomVisible:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_RoomVisible{RoomVisible: &parleyv1.RoomVisible{Room: ev.Room}}}
	case hub.EventRemoved:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: &parleyv1.Reply{
			Room: ev.Room, Code: int32(codes.PermissionDenied), Error: "you were removed from room " + ev.Room,
		}}}
	}
	return &parleyv1.JoinResponse{}
}

// entryToProto is the event of a log entry: each kind has its own field
// of JoinResponse (and, numbered alike, of SubscribeResponse).
func entryToProto(m store.Message) *parleyv1.JoinResponse {
	switch m.Kind {
	case store.KindMessage:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Message{Message: messageToProto(m)}}
	case store.KindEdit:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Edit{Edit: editToProto(m)}}
	case store.KindDelete:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Delete{Delete: deleteToProto(m)}}
	case store.KindReactionAdd:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_ReactionAdded{ReactionAdded: reactionToProto(m)}}
	case store.KindReactionRemove:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_ReactionRemoved{ReactionRemoved: reactionToProto(m)}}
	}
	return &parleyv1.JoinResponse{}
}

func messageToProto(m store.Message) *parleyv1.Message {
	return &parleyv1.Message{
		Room: m.Room, Seq: m.Seq, Sender: m.Sender, Body: m.Body,
		SentAt: timestamppb.New(m.SentAt), ClientMsgId: m.ClientMsgID, ReplyToSeq: m.ReplyToSeq,
		Mentions: m.Mentions,
	}
}

func editToProto(m store.Message) *parleyv1.MessageEdit {
	return &parleyv1.MessageEdit{Room: m.Room, Seq: m.Seq, Sender: m.Sender, SentAt: timestamppb.New(m.SentAt),
		ClientMsgId: m.ClientMsgID, TargetSeq: m.TargetSeq, Body: m.Body, Mentions: m.Mentions}
}

func deleteToProto(m store.Message) *parleyv1.MessageDelete {
	return &parleyv1.MessageDelete{Room: m.Room, Seq: m.Seq, Sender: m.Sender, SentAt: timestamppb.New(m.SentAt),
		ClientMsgId: m.ClientMsgID, TargetSeq: m.TargetSeq}
}

func reactionToProto(m store.Message) *parleyv1.Reaction {
	return &parleyv1.Reaction{Room: m.Room, Seq: m.Seq, Sender: m.Sender, SentAt: timestamppb.New(m.SentAt),
		ClientMsgId: m.ClientMsgID, TargetSeq: m.TargetSeq, Emoji: m.Emoji}
}

// viewToProto is a message of ListMessages: the message as it is now.
func viewToProto(v store.MessageView) *parleyv1.Message {
	out := messageToProto(v.Message)
	out.Deleted = v.Deleted
	if !v.EditedAt.IsZero() {
		out.EditedAt = timestamppb.New(v.EditedAt)
	}
	if len(v.Reactions) > 0 {
		out.Reactions = make([]*parleyv1.ReactionCount, len(v.Reactions))
		for i, r := range v.Reactions {
			out.Reactions[i] = &parleyv1.ReactionCount{Emoji: r.Emoji, Count: int32(r.Count), Mine: r.Mine, Users: r.Users}
		}
	}
	if p := v.ReplyTo; p != nil {
		out.ReplyTo = &parleyv1.ReplyRef{Seq: p.Seq, Sender: p.Sender, Snippet: p.Snippet, Deleted: p.Deleted}
	}
	return out
}

func presenceToProto(ps []hub.Presence) []*parleyv1.Presence {
	out := make([]*parleyv1.Presence, len(ps))
	for i, p := range ps {
		metas := make([]*parleyv1.PresenceMeta, len(p.Metas))
		for j, m := range p.Metas {
			metas[j] = &parleyv1.PresenceMeta{ConnId: m.ConnID, OnlineAt: timestamppb.New(m.OnlineAt), Client: m.Client}
		}
		out[i] = &parleyv1.Presence{User: p.User, Metas: metas}
	}
	return out
}

func roomToProto(r store.Room, online int) *parleyv1.Room {
	out := &parleyv1.Room{
		Name: r.Name, Visibility: parleyv1.RoomVisibility(r.Visibility), LastSeq: r.LastSeq,
		OnlineCount: int32(online), CreatedAt: timestamppb.New(r.CreatedAt), CreatedBy: r.CreatedBy,
	}
	if !r.LastMessageAt.IsZero() {
		out.LastMessageAt = timestamppb.New(r.LastMessageAt)
	}
	out.LastReadSeq = r.Read.LastReadSeq
	out.UnreadCount, out.MentionCount = int32(r.Read.Unread), int32(r.Read.Mentions)
	return out
}

// readMarkToProto is a user's marker in room with their counts at it.
func readMarkToProto(room string, m *hub.ReadMark) *parleyv1.ReadMarker {
	if m == nil {
		return &parleyv1.ReadMarker{Room: room}
	}
	return &parleyv1.ReadMarker{Room: room, Seq: m.Seq, UnreadCount: int32(m.Unread),
		MentionCount: int32(m.Mentions), HeadSeq: m.HeadSeq}
}

// receiptToProto is how far user has read room, and when the marker last
// moved (zero: not known).
func receiptToProto(room, user string, seq uint64, readAt time.Time) *parleyv1.Receipt {
	out := &parleyv1.Receipt{Room: room, User: user, Seq: seq}
	if !readAt.IsZero() {
		out.ReadAt = timestamppb.New(readAt)
	}
	return out
}

// markerToReceipt is a stored marker as a receipt.
func markerToReceipt(m store.ReadMarker) *parleyv1.Receipt {
	return receiptToProto(m.Room, m.User, m.Seq, m.ReadAt)
}
