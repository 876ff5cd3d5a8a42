package load

import (
	"errors"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// The bench reads server frames without unmarshalling them into protobuf
// structs: benchCodec hands a *wireFrame the raw bytes of each received
// message, and wireFrame.parse picks out the few fields the bench needs
// (kind, room check, seq, the send time in the body, reply ref and code)
// with protowire, allocating nothing. grpc frees the bytes after Unmarshal
// returns, so nothing may keep a slice of them.
type benchCodec struct{ proto encoding.CodecV2 }

func newBenchCodec() benchCodec { return benchCodec{proto: encoding.GetCodecV2("proto")} }

// Name implements encoding.CodecV2.
func (benchCodec) Name() string { return "proto" }

// Marshal implements encoding.CodecV2: requests are ordinary protobuf.
func (c benchCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// Unmarshal implements encoding.CodecV2.
func (c benchCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*wireFrame)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return f.parse(data[0].ReadOnlyData())
	}
	f.scratch = f.scratch[:0]
	for _, b := range data {
		f.scratch = append(f.scratch, b.ReadOnlyData()...)
	}
	return f.parse(f.scratch)
}

// Field numbers of JoinResponse's (and SubscribeResponse's) events.
const (
	kindReply    = 1
	kindJoined   = 2
	kindMessage  = 3
	kindReplayed = 4
	kindPresence = 5
	kindTyping   = 6
)

// wireFrame is one received frame, reduced to what the bench checks. It is
// reused for every frame of a stream.
type wireFrame struct {
	wantRoom string // set by the owner: the room whose name roomOK compares

	kind   int
	roomOK bool   // the frame's room is wantRoom
	seq    uint64 // message seq, joined head_seq, or the seq in a reply's message
	sent   int64  // the send time carried in a bench message body; -1 if none
	ref    uint64 // a reply's ref, if numeric
	refOK  bool
	code   int32  // a reply's status code
	errMsg string // a reply's error text (copied; replies with errors are rare)

	scratch []byte
}

var errBadFrame = errors.New("bench: malformed frame from server")

func (f *wireFrame) parse(b []byte) error {
	f.kind, f.roomOK, f.seq, f.sent, f.refOK, f.code, f.errMsg = 0, false, 0, -1, false, 0, ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadFrame
		}
		b = b[n:]
		if typ != protowire.BytesType || num < kindReply || num > kindTyping {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errBadFrame
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errBadFrame
		}
		b = b[n:]
		f.kind = int(num)
		var err error
		switch num {
		case kindReply:
			err = f.parseReply(v)
		case kindJoined:
			err = f.parseRoomSeq(v)
		case kindMessage:
			err = f.parseMessage(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fields calls fn for each field of a message; fn gets the varint value or
// the bytes.
func fields(b []byte, fn func(num protowire.Number, u uint64, v []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadFrame
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			u, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errBadFrame
			}
			fn(num, u, nil)
			b = b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errBadFrame
			}
			fn(num, 0, v)
			b = b[n:]
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errBadFrame
			}
			b = b[n:]
		}
	}
	return nil
}

// parseRoomSeq reads Joined (1 room, 2 head_seq).
func (f *wireFrame) parseRoomSeq(b []byte) error {
	return fields(b, func(num protowire.Number, u uint64, v []byte) {
		switch num {
		case 1:
			f.roomOK = string(v) == f.wantRoom
		case 2:
			f.seq = u
		}
	})
}

// parseMessage reads Message (1 room, 2 seq, 4 body).
func (f *wireFrame) parseMessage(b []byte) error {
	return fields(b, func(num protowire.Number, u uint64, v []byte) {
		switch num {
		case 1:
			f.roomOK = string(v) == f.wantRoom
		case 2:
			f.seq = u
		case 4:
			f.sent = bodyTime(v)
		}
	})
}

// parseReply reads Reply (1 ref, 2 code, 3 error, 5 message).
func (f *wireFrame) parseReply(b []byte) error {
	var inner error
	err := fields(b, func(num protowire.Number, u uint64, v []byte) {
		switch num {
		case 1:
			f.ref, f.refOK = parseUint(v)
		case 2:
			f.code = int32(u)
		case 3:
			f.errMsg = string(v)
		case 5:
			kind := f.kind
			inner = f.parseMessage(v)
			f.kind = kind
		}
	})
	if err != nil {
		return err
	}
	return inner
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// A bench message body is "pb1 " and the send time as 16 hex digits
// (nanoseconds on the bench's monotonic clock), then a space and padding up
// to the requested size.
const (
	bodyMagic  = "pb1 "
	bodyHeader = len(bodyMagic) + 16 + 1
)

// appendBody appends a body of size bytes carrying sent to dst.
func appendBody(dst []byte, sent int64, size int) []byte {
	dst = append(dst, bodyMagic...)
	const hexDigits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(uint64(sent)>>uint(shift))&0xf])
	}
	dst = append(dst, ' ')
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}

// bodyTime returns the send time in a bench body, or -1.
func bodyTime(b []byte) int64 {
	if len(b) < bodyHeader || string(b[:len(bodyMagic)]) != bodyMagic {
		return -1
	}
	var n uint64
	for _, c := range b[len(bodyMagic) : len(bodyMagic)+16] {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		default:
			return -1
		}
	}
	return int64(n)
}
