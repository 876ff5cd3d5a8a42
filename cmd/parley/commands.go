package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// jsonOut writes protobuf messages as JSON, the same field names as the
// REST gateway.
var jsonOut = protojson.MarshalOptions{Multiline: true, Indent: "  "}

func writeJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeJSONArray writes messages as one JSON array.
func writeJSONArray[M proto.Message](w io.Writer, ms []M) error {
	var sb strings.Builder
	sb.WriteString("[")
	for i, m := range ms {
		b, err := protojson.MarshalOptions{}.Marshal(m)
		if err != nil {
			return err
		}
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("\n  ")
		sb.Write(b)
	}
	if len(ms) > 0 {
		sb.WriteString("\n")
	}
	sb.WriteString("]\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// dialService opens a connection and a ChatService client for a scriptable command.
func dialService(e *cli.Env) (parleyv1.ChatServiceClient, func(), error) {
	conn, err := e.Globals.Dial()
	if err != nil {
		return nil, nil, err
	}
	return parleyv1.NewChatServiceClient(conn), func() { conn.Close() }, nil
}

func runToken(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, "token", "token [--json] <user>", `
Asks a server started with --dev for a token for <user> and prints it, so
that  export PARLEY_TOKEN=$(parley token alice)  works. Servers without --dev
refuse (use 'parleyd token' on the server's machine instead).`)
	asJSON := fs.Bool("json", false, "print the DevLogin response as JSON (token and expiry)")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("give exactly one user name")
	}
	c, done, err := dialService(e)
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := context.WithTimeout(ctx, e.Globals.Timeout)
	defer cancel()
	resp, err := c.DevLogin(cctx, &parleyv1.DevLoginRequest{User: pos[0]})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.Stdout, resp)
	}
	_, err = fmt.Fprintln(e.Stdout, resp.GetToken())
	return err
}

func runRooms(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, "rooms", "rooms [--json]", `
Lists every room you can see (all pages), with its visibility, how many users
are online, your unread messages (not your own, not deleted) and how many of
them mention you (in a direct room, all of them), its last seq and when its
last message was sent.`)
	asJSON := fs.Bool("json", false, "print a JSON array of rooms")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("rooms takes no arguments")
	}
	if err := e.Globals.NeedToken(); err != nil {
		return err
	}
	c, done, err := dialService(e)
	if err != nil {
		return err
	}
	defer done()
	var rooms []*parleyv1.Room
	page := ""
	for {
		cctx, cancel := e.Globals.UnaryCtx(ctx)
		resp, err := c.ListRooms(cctx, &parleyv1.ListRoomsRequest{PageSize: 200, PageToken: page})
		cancel()
		if err != nil {
			return err
		}
		rooms = append(rooms, resp.GetRooms()...)
		if page = resp.GetNextPageToken(); page == "" {
			break
		}
	}
	if *asJSON {
		return writeJSONArray(e.Stdout, rooms)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOM\tVISIBILITY\tONLINE\tUNREAD\tMENTIONS\tLAST SEQ\tLAST MESSAGE\tCREATED BY")
	for _, r := range rooms {
		last := "-"
		if r.GetLastMessageAt() != nil {
			last = fmtTime(r.GetLastMessageAt().AsTime())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.GetName(), visibilityName(r.GetVisibility()),
			r.GetOnlineCount(), r.GetUnreadCount(), r.GetMentionCount(), r.GetLastSeq(), last, r.GetCreatedBy())
	}
	return tw.Flush()
}

func visibilityName(v parleyv1.RoomVisibility) string {
	switch v {
	case parleyv1.RoomVisibility_ROOM_VISIBILITY_PUBLIC:
		return "public"
	case parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE:
		return "private"
	case parleyv1.RoomVisibility_ROOM_VISIBILITY_DIRECT:
		return "direct"
	}
	return "-"
}

func fmtTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

// historyFlags are parley history's options.
type historyFlags struct {
	limit       int
	before      uint64
	after       uint64
	oldestFirst bool
	all         bool
	json        bool
}

func runHistory(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, "history", "history [flags] <room>", `
Prints a room's stored messages, newest first (like git log), or oldest first
with --oldest-first, as they are now: "(edited)", a tombstone for a deleted
one, reactions with their counts, and the message a reply answers. --before
and --after bound the seqs; --all pages through everything in range instead
of stopping at --limit.`)
	var h historyFlags
	fs.IntVar(&h.limit, "limit", 50, "how many messages to print (pages of 200 are fetched as needed)")
	fs.Uint64Var(&h.before, "before", 0, "only messages with a seq below this one (0: no bound)")
	fs.Uint64Var(&h.after, "after", 0, "only messages with a seq above this one")
	fs.BoolVar(&h.oldestFirst, "oldest-first", false, "walk from the oldest message instead of the newest")
	fs.BoolVar(&h.all, "all", false, "print every message in range, ignoring --limit")
	fs.BoolVar(&h.json, "json", false, "print a JSON array of messages")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("give exactly one room")
	}
	if h.limit <= 0 && !h.all {
		return cli.Usagef("--limit must be at least 1")
	}
	if err := e.Globals.NeedToken(); err != nil {
		return err
	}
	c, done, err := dialService(e)
	if err != nil {
		return err
	}
	defer done()
	msgs, err := fetchHistory(ctx, e.Globals, c, pos[0], h)
	if err != nil {
		return err
	}
	if h.json {
		return writeJSONArray(e.Stdout, msgs)
	}
	for _, m := range msgs {
		fmt.Fprintf(e.Stdout, "%6d  %s  %s\n", m.GetSeq(), fmtTime(m.GetSentAt().AsTime()), messageText(m))
	}
	return nil
}

// fetchHistory pages through ListMessages until it has h.limit messages
// (or all of them with h.all).
func fetchHistory(ctx context.Context, g *cli.Globals, c parleyv1.ChatServiceClient, room string, h historyFlags) ([]*parleyv1.Message, error) {
	req := &parleyv1.ListMessagesRequest{Room: room, Order: parleyv1.MessageOrder_MESSAGE_ORDER_NEWEST_FIRST}
	if h.oldestFirst {
		req.Order = parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST
	}
	if h.before > 0 {
		req.BeforeSeq = &h.before
	}
	if h.after > 0 {
		req.AfterSeq = &h.after
	}
	var out []*parleyv1.Message
	for {
		req.Limit = 200
		if !h.all {
			req.Limit = int32(min(200, h.limit-len(out)))
		}
		cctx, cancel := g.UnaryCtx(ctx)
		resp, err := c.ListMessages(cctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetMessages()...)
		if resp.GetNextPageToken() == "" || (!h.all && len(out) >= h.limit) {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func runSend(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, "send", "send [flags] <room> <text>", `
Sends one message and prints its seq once the server has stored it. Words
after the room are joined with spaces; use -- before text that starts with
'-'. A retry with the same --client-msg-id stores nothing new and prints the
original message. --reply-to makes it a reply to a message of the room.`)
	id := fs.String("client-msg-id", "", "idempotency key: a retried send with the same id returns the original message")
	replyTo := fs.Uint64("reply-to", 0, "the seq of the message of the room this one replies to")
	asJSON := fs.Bool("json", false, "print the stored message as JSON")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return cli.Usagef("give a room and the text to send")
	}
	if err := e.Globals.NeedToken(); err != nil {
		return err
	}
	c, done, err := dialService(e)
	if err != nil {
		return err
	}
	defer done()
	cctx, cancel := e.Globals.UnaryCtx(ctx)
	defer cancel()
	resp, err := c.SendMessage(cctx, &parleyv1.SendMessageRequest{Room: pos[0], Body: strings.Join(pos[1:], " "), ClientMsgId: *id, ReplyToSeq: *replyTo})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.Stdout, resp.GetMessage())
	}
	m := resp.GetMessage()
	_, err = fmt.Fprintf(e.Stdout, "sent to %s: seq %d at %s\n", m.GetRoom(), m.GetSeq(), fmtTime(m.GetSentAt().AsTime()))
	return err
}

func runCreate(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, "create", "create [--private] [--json] <room>", `
Creates a room: public (anyone signed in may join it) or, with --private,
visible only to you. Names are 1-64 characters of a-z, 0-9, '-' and '_'.`)
	private := fs.Bool("private", false, "make the room private")
	asJSON := fs.Bool("json", false, "print the created room as JSON")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("give exactly one room name")
	}
	if err := e.Globals.NeedToken(); err != nil {
		return err
	}
	c, done, err := dialService(e)
	if err != nil {
		return err
	}
	defer done()
	req := &parleyv1.CreateRoomRequest{Name: pos[0], Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PUBLIC}
	if *private {
		req.Visibility = parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE
	}
	cctx, cancel := e.Globals.UnaryCtx(ctx)
	defer cancel()
	resp, err := c.CreateRoom(cctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.Stdout, resp.GetRoom())
	}
	r := resp.GetRoom()
	_, err = fmt.Fprintf(e.Stdout, "created %s room %s\n", visibilityName(r.GetVisibility()), r.GetName())
	return err
}

// itoa is strconv.FormatUint for seqs.
func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
