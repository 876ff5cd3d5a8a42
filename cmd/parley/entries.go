package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// parseSeq reads a message's seq from the command line: 1 or more.
func parseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, cli.Usagef("%q is not a message's seq (a number from 1)", s)
	}
	return n, nil
}

// entryCommand describes a command that changes a stored message: edit,
// delete, react and unreact. Each takes <room> <seq> and, unless text is
// "", one more argument (text: the rest of the words, joined).
type entryCommand struct {
	name, synopsis, help string
	text                 string // what the argument after the seq is: "" for none
	joinText             bool   // the words after the seq are one text
	// call sends the request and returns the stored entry (nil when the
	// server changed nothing) and its seq.
	call func(ctx context.Context, c parleyv1.ChatServiceClient, room string, seq uint64, arg, id string) (proto.Message, uint64, error)
	done string // printed after "<room> [seq]: ", e.g. "edited"
	noop string // printed when nothing changed
}

func (ec entryCommand) run(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, ec.name, ec.synopsis, ec.help)
	id := fs.String("client-msg-id", "", "idempotency key: a retry with the same id stores nothing new and prints the original entry")
	asJSON := fs.Bool("json", false, "print the stored entry as JSON (null when nothing changed)")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case ec.text == "" && len(pos) != 2:
		return cli.Usagef("give a room and a message's seq")
	case ec.text != "" && (len(pos) < 3 || (!ec.joinText && len(pos) != 3)):
		return cli.Usagef("give a room, a message's seq and %s", ec.text)
	}
	seq, err := parseSeq(pos[1])
	if err != nil {
		return err
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
	entry, entrySeq, err := ec.call(cctx, c, pos[0], seq, strings.Join(pos[2:], " "), *id)
	if err != nil {
		return err
	}
	if *asJSON {
		if entry == nil {
			_, err = fmt.Fprintln(e.Stdout, "null")
			return err
		}
		return writeJSON(e.Stdout, entry)
	}
	if entry == nil {
		_, err = fmt.Fprintf(e.Stdout, "%s [%d]: nothing changed (%s)\n", pos[0], seq, ec.noop)
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "%s [%d]: %s, entry seq %d\n", pos[0], seq, ec.done, entrySeq)
	return err
}

// entryCommands are edit, delete, react and unreact.
func entryCommands() []entryCommand {
	return []entryCommand{{
		name: "edit", synopsis: "edit [flags] <room> <seq> <text>", text: "the new text", joinText: true,
		help: `
Replaces the text of your message <seq> in <room>. The edit is an entry of
the room's log with a seq of its own, which is printed. Words after the seq
are joined with spaces; use -- before text that starts with '-'.`,
		call: func(ctx context.Context, c parleyv1.ChatServiceClient, room string, seq uint64, text, id string) (proto.Message, uint64, error) {
			resp, err := c.EditMessage(ctx, &parleyv1.EditMessageRequest{Room: room, Seq: seq, Body: text, ClientMsgId: id})
			if resp.GetEdit() == nil {
				return nil, 0, err
			}
			return resp.GetEdit(), resp.GetEdit().GetSeq(), err
		},
		done: "edited", noop: "already so",
	}, {
		name: "delete", synopsis: "delete [flags] <room> <seq>",
		help: `
Deletes message <seq> in <room>: yours, or any in a private room you
created. Its text is erased on the server; history shows a tombstone.
Deleting a deleted message changes nothing and succeeds.`,
		call: func(ctx context.Context, c parleyv1.ChatServiceClient, room string, seq uint64, _, id string) (proto.Message, uint64, error) {
			resp, err := c.DeleteMessage(ctx, &parleyv1.DeleteMessageRequest{Room: room, Seq: seq, ClientMsgId: id})
			if resp.GetDelete() == nil {
				return nil, 0, err
			}
			return resp.GetDelete(), resp.GetDelete().GetSeq(), err
		},
		done: "deleted", noop: "it was deleted already",
	}, {
		name: "react", synopsis: "react [flags] <room> <seq> <emoji>", text: "an emoji",
		help: `
Adds your reaction <emoji> to message <seq> in <room>: one emoji or short
token of at most 32 bytes, without spaces. Reacting twice with the same
emoji changes nothing and succeeds.`,
		call: func(ctx context.Context, c parleyv1.ChatServiceClient, room string, seq uint64, emoji, id string) (proto.Message, uint64, error) {
			resp, err := c.AddReaction(ctx, &parleyv1.AddReactionRequest{Room: room, Seq: seq, Emoji: emoji, ClientMsgId: id})
			if resp.GetReaction() == nil {
				return nil, 0, err
			}
			return resp.GetReaction(), resp.GetReaction().GetSeq(), err
		},
		done: "reacted", noop: "you had reacted so already",
	}, {
		name: "unreact", synopsis: "unreact [flags] <room> <seq> <emoji>", text: "an emoji",
		help: `
Takes back your reaction <emoji> on message <seq> in <room>. Taking back a
reaction you do not have changes nothing and succeeds.`,
		call: func(ctx context.Context, c parleyv1.ChatServiceClient, room string, seq uint64, emoji, id string) (proto.Message, uint64, error) {
			resp, err := c.RemoveReaction(ctx, &parleyv1.RemoveReactionRequest{Room: room, Seq: seq, Emoji: emoji, ClientMsgId: id})
			if resp.GetReaction() == nil {
				return nil, 0, err
			}
			return resp.GetReaction(), resp.GetReaction().GetSeq(), err
		},
		done: "reaction taken back", noop: "you had no such reaction",
	}}
}

// messageText is a message as history shows it: the sender, the message
// it replies to, its text or a tombstone, "(edited)" and its reactions.
func messageText(m *parleyv1.Message) string {
	var b strings.Builder
	b.WriteString(m.GetSender())
	b.WriteString(": ")
	if r := m.GetReplyTo(); r != nil {
		if r.GetDeleted() {
			fmt.Fprintf(&b, "(re [%d] %s: deleted) ", r.GetSeq(), r.GetSender())
		} else {
			fmt.Fprintf(&b, "(re [%d] %s: %q) ", r.GetSeq(), r.GetSender(), r.GetSnippet())
		}
	} else if s := m.GetReplyToSeq(); s != 0 {
		fmt.Fprintf(&b, "(re [%d]) ", s)
	}
	if m.GetDeleted() {
		b.WriteString("(message deleted)")
		return b.String()
	}
	b.WriteString(m.GetBody())
	if m.GetEditedAt() != nil {
		b.WriteString(" (edited)")
	}
	if rs := m.GetReactions(); len(rs) > 0 {
		b.WriteString("  [")
		for i, r := range rs {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%s %d", r.GetEmoji(), r.GetCount())
		}
		b.WriteString("]")
	}
	return b.String()
}
