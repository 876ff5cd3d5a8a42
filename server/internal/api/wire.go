package api

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
)

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
		w, ok := f.Wire.(mem.BufferSlice)
		if !ok {
			w = mem.BufferSlice{mem.SliceBuffer(f.Data)} // see WireForm
		}
		if f.Tail != nil {
			// A new slice: the shared one may be sent on other streams.
			// Protobuf merges the tail's fields into the event's.
			w = append(w[:len(w):len(w)], mem.SliceBuffer(f.Tail))
		}
		return w, nil
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

// malformed returns an errInvalid error if m failed to decode.
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
			return invalidf("request is not a valid %s: %s", pm.ProtoReflect().Descriptor().FullName(), v)
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// sentReply encodes the JoinResponse that answers a stored send: r with
// the message copied from the event the room encoded for it, not
// converted and marshalled again. The bytes are those proto.Marshal gives
// for r with Message set (fields in number order; a successful reply sets
// none after message).
func sentReply(r *parleyv1.Reply, sent hub.Sent) ([]byte, error) {
	msg, ok := eventMessage(sent.Event)
	if !ok {
		r.Message = messageToProto(sent.Message)
		return proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: r}})
	}
	n := proto.Size(r) + protowire.SizeTag(replyMessageField) + protowire.SizeBytes(len(msg))
	b := make([]byte, 0, protowire.SizeTag(joinReplyField)+protowire.SizeBytes(n))
	b = protowire.AppendTag(b, joinReplyField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, r)
	if err != nil {
		return nil, err
	}
	b = protowire.AppendTag(b, replyMessageField, protowire.BytesType)
	return protowire.AppendBytes(b, msg), nil
}

// eventMessage returns the encoded Message inside an encoded message
// event (a JoinResponse with only its message set); false if event is not
// one.
func eventMessage(event []byte) ([]byte, bool) {
	num, typ, n := protowire.ConsumeTag(event)
	if n < 0 || num != joinMessageField || typ != protowire.BytesType {
		return nil, false
	}
	msg, m := protowire.ConsumeBytes(event[n:])
	if m < 0 || n+m != len(event) {
		return nil, false
	}
	return msg, true
}

// Field numbers that sentReply writes and eventMessage reads.
var (
	joinReplyField    = fieldNumber(&parleyv1.JoinResponse{}, "reply")
	joinMessageField  = fieldNumber(&parleyv1.JoinResponse{}, "message")
	replyMessageField = fieldNumber(&parleyv1.Reply{}, "message")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}
