package app_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// entrySeq returns the seq of an event that is an entry of a room's log
// (a message, edit, delete or reaction), 0 for any other event.
func entrySeq(ev *parleyv1.JoinResponse) uint64 {
	switch e := ev.GetEvent().(type) {
	case *parleyv1.JoinResponse_Message:
		return e.Message.GetSeq()
	case *parleyv1.JoinResponse_Edit:
		return e.Edit.GetSeq()
	case *parleyv1.JoinResponse_Delete:
		return e.Delete.GetSeq()
	case *parleyv1.JoinResponse_ReactionAdded:
		return e.ReactionAdded.GetSeq()
	case *parleyv1.JoinResponse_ReactionRemoved:
		return e.ReactionRemoved.GetSeq()
	}
	return 0
}

// entryKind names an entry event's kind as the oneof does.
func entryKind(ev *parleyv1.JoinResponse) string {
	return string(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("event")).Name())
}

func isEntry(ev *parleyv1.JoinResponse) bool { return entrySeq(ev) > 0 }

// entries reads the next n log entries from js, failing unless their seqs
// run from first on without a gap or a repeat.
func (js *joinStream) entries(first uint64, n int) []*parleyv1.JoinResponse {
	js.t.Helper()
	out := make([]*parleyv1.JoinResponse, n)
	for i := range out {
		out[i] = js.next(isEntry, nil)
		if seq := entrySeq(out[i]); seq != first+uint64(i) {
			js.t.Fatalf("entry %d has seq %d (%s), want %d", i, seq, entryKind(out[i]), first+uint64(i))
		}
	}
	return out
}

// frame sends one Join frame and returns its reply.
func (js *joinStream) frame(req *parleyv1.JoinRequest) *parleyv1.Reply {
	js.t.Helper()
	return js.reply(js.send(req))
}

func (js *joinStream) postReply(room, body string, to uint64, id string) *parleyv1.Reply {
	return js.frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: body, ReplyToSeq: to, ClientMsgId: id}}})
}

func (js *joinStream) edit(room string, seq uint64, body, id string) *parleyv1.Reply {
	return js.frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Edit{Edit: &parleyv1.JoinRequest_EditMessage{Room: room, Seq: seq, Body: body, ClientMsgId: id}}})
}

func (js *joinStream) del(room string, seq uint64, id string) *parleyv1.Reply {
	return js.frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Delete{Delete: &parleyv1.JoinRequest_DeleteMessage{Room: room, Seq: seq, ClientMsgId: id}}})
}

func (js *joinStream) react(room string, seq uint64, emoji, id string) *parleyv1.Reply {
	return js.frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_React_{React: &parleyv1.JoinRequest_React{Room: room, Seq: seq, Emoji: emoji, ClientMsgId: id}}})
}

func (js *joinStream) unreact(room string, seq uint64, emoji, id string) *parleyv1.Reply {
	return js.frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Unreact{Unreact: &parleyv1.JoinRequest_React{Room: room, Seq: seq, Emoji: emoji, ClientMsgId: id}}})
}

// okSeq fails unless r is OK, and returns the seq it stored.
func okSeq(t testing.TB, r *parleyv1.Reply) uint64 {
	t.Helper()
	if r.GetCode() != 0 {
		t.Fatalf("reply %s: %s: %s", r.GetRef(), codes.Code(r.GetCode()), r.GetError())
	}
	if m := r.GetMessage(); m != nil {
		return m.GetSeq()
	}
	return r.GetSeq()
}

// reactionURL is the REST path of one emoji on one message.
func reactionURL(base, room string, seq uint64, emoji string) string {
	return fmt.Sprintf("%s/v1/rooms/%s/messages/%d/reactions/%s", base, room, seq, url.PathEscape(emoji))
}

// viewModel is what a client builds by applying a room's log entries in
// seq order: the state ListMessages must show.
type viewModel struct {
	msgs  map[uint64]*modelMsg
	order []uint64
}

type modelMsg struct {
	seq             uint64
	sender, body    string
	replyTo         uint64
	edited, deleted bool
	reactions       []*modelReaction // in the order each emoji (re)appeared
}

type modelReaction struct {
	emoji string
	users []string // oldest first
}

func newViewModel() *viewModel { return &viewModel{msgs: map[uint64]*modelMsg{}} }

// apply is the whole client side of the model: each kind changes the
// message it targets; an entry for a message the client never saw is
// ignored.
func (v *viewModel) apply(ev *parleyv1.JoinResponse) {
	switch e := ev.GetEvent().(type) {
	case *parleyv1.JoinResponse_Message:
		m := e.Message
		v.msgs[m.GetSeq()] = &modelMsg{seq: m.GetSeq(), sender: m.GetSender(), body: m.GetBody(), replyTo: m.GetReplyToSeq()}
		v.order = append(v.order, m.GetSeq())
	case *parleyv1.JoinResponse_Edit:
		if m := v.msgs[e.Edit.GetTargetSeq()]; m != nil {
			m.body, m.edited = e.Edit.GetBody(), true
		}
	case *parleyv1.JoinResponse_Delete:
		if m := v.msgs[e.Delete.GetTargetSeq()]; m != nil {
			m.body, m.deleted, m.reactions = "", true, nil
		}
	case *parleyv1.JoinResponse_ReactionAdded:
		r := e.ReactionAdded
		if m := v.msgs[r.GetTargetSeq()]; m != nil {
			i := slices.IndexFunc(m.reactions, func(x *modelReaction) bool { return x.emoji == r.GetEmoji() })
			if i < 0 {
				m.reactions = append(m.reactions, &modelReaction{emoji: r.GetEmoji()})
				i = len(m.reactions) - 1
			}
			m.reactions[i].users = append(m.reactions[i].users, r.GetSender())
		}
	case *parleyv1.JoinResponse_ReactionRemoved:
		r := e.ReactionRemoved
		if m := v.msgs[r.GetTargetSeq()]; m != nil {
			i := slices.IndexFunc(m.reactions, func(x *modelReaction) bool { return x.emoji == r.GetEmoji() })
			if i >= 0 {
				x := m.reactions[i]
				x.users = slices.DeleteFunc(x.users, func(u string) bool { return u == r.GetSender() })
				if len(x.users) == 0 {
					m.reactions = slices.Delete(m.reactions, i, i+1)
				}
			}
		}
	}
}

// page renders the model as summaries of ListMessages' messages, oldest
// first, as viewer sees them.
func (v *viewModel) page(viewer string) []string {
	var out []string
	for _, seq := range v.order {
		m := v.msgs[seq]
		s := fmt.Sprintf("%d %s %q edited=%v deleted=%v", m.seq, m.sender, m.body, m.edited, m.deleted)
		for _, r := range m.reactions {
			s += fmt.Sprintf(" [%s %d mine=%v %v]", r.emoji, len(r.users), slices.Contains(r.users, viewer), r.users[:min(3, len(r.users))])
		}
		if m.replyTo != 0 {
			s += fmt.Sprintf(" reply_to=%d", m.replyTo)
			if p := v.msgs[m.replyTo]; p != nil {
				snippet := []rune(p.body)
				s += fmt.Sprintf("(%s %q deleted=%v)", p.sender, string(snippet[:min(100, len(snippet))]), p.deleted)
			}
		}
		out = append(out, s)
	}
	return out
}

// summarize renders a message of ListMessages like viewModel.page.
func summarize(m *parleyv1.Message) string {
	s := fmt.Sprintf("%d %s %q edited=%v deleted=%v", m.GetSeq(), m.GetSender(), m.GetBody(), m.GetEditedAt() != nil, m.GetDeleted())
	for _, r := range m.GetReactions() {
		s += fmt.Sprintf(" [%s %d mine=%v %v]", r.GetEmoji(), r.GetCount(), r.GetMine(), r.GetUsers())
	}
	if m.GetReplyToSeq() != 0 {
		s += fmt.Sprintf(" reply_to=%d", m.GetReplyToSeq())
		if p := m.GetReplyTo(); p != nil && p.GetSender() != "" {
			s += fmt.Sprintf("(%s %q deleted=%v)", p.GetSender(), p.GetSnippet(), p.GetDeleted())
		}
	}
	return s
}

// history returns the whole history of room as viewer sees it, oldest
// first, as summaries, with the room's head.
func (ts *testServer) history(t testing.TB, viewer, room string) ([]string, uint64) {
	t.Helper()
	c, ctx := ts.client(t, viewer)
	return historyOf(t, c, ctx, room)
}

func historyOf(t testing.TB, c parleyv1.ChatServiceClient, ctx context.Context, room string) ([]string, uint64) {
	t.Helper()
	var out []string
	var head uint64
	req := &parleyv1.ListMessagesRequest{Room: room, Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST, Limit: 200}
	for {
		resp, err := c.ListMessages(ctx, req)
		if err != nil {
			t.Fatalf("list messages of %s: %v", room, err)
		}
		for _, m := range resp.GetMessages() {
			out = append(out, summarize(m))
		}
		head = resp.GetHeadSeq()
		if resp.GetNextPageToken() == "" {
			return out, head
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// sameView fails unless the model built from the entries equals the
// history viewer reads.
func sameView(t testing.TB, what string, entries []*parleyv1.JoinResponse, history []string, viewer string) {
	t.Helper()
	v := newViewModel()
	for _, ev := range entries {
		v.apply(ev)
	}
	if got := v.page(viewer); !slices.Equal(got, history) {
		t.Fatalf("%s: the entries applied in order give\n  %s\nListMessages shows\n  %s", what, strings.Join(got, "\n  "), strings.Join(history, "\n  "))
	}
}

// marshalAll is the wire bytes of events.
func marshalAll(t testing.TB, events []*parleyv1.JoinResponse) []byte {
	t.Helper()
	var out []byte
	for _, ev := range events {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}
