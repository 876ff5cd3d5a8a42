package api

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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
		}}}
	case hub.EventMessage:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Message{Message: messageToProto(ev.Message)}}
	case hub.EventReplayed:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Replayed{Replayed: &parleyv1.Replayed{
			Room: ev.Room, ThroughSeq: ev.ThroughSeq,
		}}}
	case hub.EventPresenceDiff:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_PresenceDiff{PresenceDiff: &parleyv1.PresenceDiff{
			Room: ev.Room, Joins: presenceToProto(ev.Joins), Leaves: presenceToProto(ev.Leaves),
		}}}
	case hub.EventTyping:
		return &parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Typing{Typing: &parleyv1.Typing{
			Room: ev.Room, User: ev.User, Active: ev.Active,
		}}}
	}
	return &parleyv1.JoinResponse{}
}

func messageToProto(m store.Message) *parleyv1.Message {
	return &parleyv1.Message{
		Room: m.Room, Seq: m.Seq, Sender: m.Sender, Body: m.Body,
		SentAt: timestamppb.New(m.SentAt), ClientMsgId: m.ClientMsgID,
	}
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
	return out
}

// WireForm is the hub's Config.WireForm: a frame's bytes as Codec hands
// them to grpc-go, made once and shared by every stream that sends the
// frame. grpc-go only reads a BufferSlice it is given, and SliceBuffer's
// Free does nothing, so the shared bytes never go back to a pool while
// other streams still send them.
func WireForm(data []byte) any { return mem.BufferSlice{mem.SliceBuffer(data)} }

// Codec is the server's codec: protobuf for every message, except that
// the hub's frames (*hub.Frame), encoded already, are written as they are,
// so one encoding serves every stream that receives the event.
type Codec struct{ proto encoding.CodecV2 }

// NewCodec returns the server codec, wrapping grpc's registered proto codec.
func NewCodec() Codec { return Codec{proto: encoding.GetCodecV2("proto")} }

// Name implements encoding.CodecV2; it replaces "proto".
func (c Codec) Name() string { return "proto" }

// Marshal implements encoding.CodecV2.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*hub.Frame); ok {
		if w, ok := f.Wire.(mem.BufferSlice); ok {
			return w, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(f.Data)}, nil // see WireForm
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2. grpc-go reports a message that
// fails to decode as INTERNAL, blaming the server for the client's bytes;
// so a request that is not valid protobuf (a string that is not UTF-8, say)
// decodes instead as an empty message carrying the decode error in an
// unknown field, and the service answers it INVALID_ARGUMENT (malformed).
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.proto.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	proto.Reset(m)
	b := protowire.AppendTag(nil, malformedField, protowire.BytesType)
	m.ProtoReflect().SetUnknown(protowire.AppendString(b, err.Error()))
	return nil
}

// malformedField is the field number, beyond any the API will use, that
// marks a request that did not decode.
const malformedField = protowire.MaxValidNumber

// malformed returns an INVALID_ARGUMENT error if m failed to decode.
func malformed(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	b := pm.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == malformedField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeString(b)
			return status.Errorf(codes.InvalidArgument, "request is not a valid %s: %s", pm.ProtoReflect().Descriptor().FullName(), v)
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}
