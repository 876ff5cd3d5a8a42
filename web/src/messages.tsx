// The message list of the open room. It redraws when the room's list of
// messages or its paging changes, not for every change of the chat; each
// message is a component that reads its own signal, so a change to one
// message (an edit, a reaction) redraws that message alone.
import type { Signal } from "@preact/signals";
import { Component, createContext, createRef, type ComponentChildren, type VNode } from "preact";
import { useContext, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { Avatar } from "./avatar";
import type { Chat } from "./chat";
import { clock, dayLabel, dayStart, fullTime } from "./format";
import { isDirect, roomTitle, type Msg, type PendingSend, type RoomState } from "./room";

const groupGapMs = 5 * 60 * 1000;
const none: readonly Signal<Msg>[] = [];

/** Emojis are the reactions the picker offers. */
export const Emojis = ["\u{1F44D}", "\u2764\uFE0F", "\u{1F602}", "\u{1F389}", "\u{1F62E}", "\u{1F622}"];

/** Scroll is what the list needs from the page around it. */
export interface Scroll {
  /** Set when the user sent a message: the next draw scrolls to the bottom. */
  stickToBottom: boolean;
  /** The user chose to reply to a message of the open room. */
  reply(seq: number): void;
}

// RowContext is what a message row needs beyond its own signal: one value
// per room, so a row redraws for its message, not for the list.
interface RowCtx {
  chat: Chat;
  me: string;
  room: RoomState;
  scroll: Scroll;
  /** A row changed its height: keep the list at the bottom if it was there. */
  resized(): void;
  /** Watch a row scroll into view, to mark it read; and stop. */
  observe(el: Element): void;
  unobserve(el: Element): void;
}
const RowContext = createContext<RowCtx | null>(null);

/** quoteText is the start of a message's text, for a quote. */
export function quoteText(body: string): string {
  const line = body.replace(/\s+/g, " ").trim();
  return line.length > 100 ? line.slice(0, 99) + "\u2026" : line;
}

interface Props {
  chat: Chat;
  me: string;
  room?: RoomState;
  scroll: Scroll;
}

interface Snapshot {
  atBottom: boolean;
  fromBottom: number;
}

/** MessageList is the open room's messages, with its history paging. */
export class MessageList extends Component<Props> {
  private box = createRef<HTMLDivElement>();
  private drawnKey = "";
  private drawnList = none;
  // The room and first seq on the page, to tell a switch of room from a
  // page of older messages put on top.
  private shownRoom = "";
  private firstSeq = 0;
  // Whether the list was at its bottom when last scrolled or drawn: a row
  // that grows later (an edit, a reaction) cannot ask before it grows.
  private atBottom = true;
  private ctx?: RowCtx;
  private io?: IntersectionObserver;
  private jump = createRef<HTMLButtonElement>();

  // Everything but the messages themselves that the list shows.
  private key({ chat, room: r }: Props): string {
    if (!r) return "";
    const pending = r.pending.map((p) => p.clientMsgId + p.state).join();
    return [r.name, r.dividerSeq, r.status, r.atBeginning, r.loadingOlder, r.historyLoaded, !!r.olderToken, pending, pending && chat.conn].join("|");
  }

  shouldComponentUpdate(next: Props): boolean {
    return this.key(next) !== this.drawnKey || (next.room?.list() ?? none) !== this.drawnList;
  }

  getSnapshotBeforeUpdate(): Snapshot {
    const box = this.box.current!;
    return { atBottom: box.scrollHeight - box.scrollTop - box.clientHeight < 48, fromBottom: box.scrollHeight - box.scrollTop };
  }

  componentDidMount(): void {
    this.placed({ atBottom: true, fromBottom: 0 });
  }

  componentWillUnmount(): void {
    this.io?.disconnect();
  }

  private observe = (el: Element): void => {
    if (!this.io) this.io = new IntersectionObserver(this.onIntersect, { root: this.box.current, threshold: [0.5, 1] });
    this.io.observe(el);
  };

  private unobserve = (el: Element): void => {
    this.io?.unobserve(el);
  };

  // onIntersect marks read the newest message that came into view: at least
  // half of it, or half the list's height for a long one.
  private onIntersect = (entries: IntersectionObserverEntry[]): void => {
    const r = this.props.room;
    if (!r) return;
    let seq = 0;
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      const big = e.rootBounds ? e.intersectionRect.height >= e.rootBounds.height / 2 : false;
      if (e.intersectionRatio < 0.5 && !big) continue;
      seq = Math.max(seq, Number((e.target as HTMLElement).dataset.seq ?? 0));
    }
    if (seq) this.props.chat.seen(r.name, seq);
    this.showJump();
  };

  // showJump shows "jump to first unread" while the divider is above the
  // view or not loaded yet.
  private showJump(): void {
    const box = this.box.current;
    const button = this.jump.current;
    const r = this.props.room;
    if (!box || !button) return;
    const div = box.querySelector<HTMLElement>('[data-testid="new-divider"]');
    let show = false;
    if (r && r.dividerSeq >= 0 && r.unreadAtOpen > 0) {
      if (div) show = div.getBoundingClientRect().bottom < box.getBoundingClientRect().top;
      else show = !r.atBeginning && (r.list()[0]?.peek().seq ?? 0) > r.dividerSeq + 1;
    }
    button.hidden = !show;
  }

  private jumpToUnread = async (): Promise<void> => {
    const { chat } = this.props;
    const r = this.props.room;
    const box = this.box.current;
    if (!r || !box) return;
    for (let page = 0; page < 20; page++) {
      const div = box.querySelector<HTMLElement>('[data-testid="new-divider"]');
      if (div) {
        div.scrollIntoView({ block: "start" });
        this.showJump();
        return;
      }
      if (r.atBeginning || !r.olderToken) return;
      await chat.loadOlder(r.name);
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    }
  };

  componentDidUpdate(_p: Props, _s: unknown, snap: Snapshot): void {
    this.placed(snap);
  }

  // placed keeps the scroll position where a reader expects it: at the
  // bottom in a room just opened, after sending, or when it was there; on
  // the same message when older ones were put on top.
  private placed(snap: Snapshot): void {
    const box = this.box.current!;
    const r = this.props.room;
    const first = this.drawnList[0]?.peek().seq ?? 0;
    const switched = (r?.name ?? "") !== this.shownRoom;
    const prepended = !switched && this.drawnList.length > 0 && first < this.firstSeq;
    if (switched || snap.atBottom || this.props.scroll.stickToBottom) box.scrollTop = box.scrollHeight;
    else if (prepended) box.scrollTop = box.scrollHeight - snap.fromBottom;
    this.props.scroll.stickToBottom = false;
    this.atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    this.props.chat.setAtBottom(this.atBottom);
    this.showJump();
    this.shownRoom = r?.name ?? "";
    this.firstSeq = first;
    if (r) requestAnimationFrame(() => this.maybeLoadOlder());
  }

  private onScroll = (): void => {
    const box = this.box.current!;
    const at = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    if (at !== this.atBottom) this.props.chat.setAtBottom(at);
    this.atBottom = at;
    this.showJump();
    this.maybeLoadOlder();
  };

  private resized = (): void => {
    const box = this.box.current;
    if (box && this.atBottom) box.scrollTop = box.scrollHeight;
  };

  // rowCtx is the rows' context for a room, the same object while it stays.
  private rowCtx(room: RoomState): RowCtx {
    const { chat, me, scroll } = this.props;
    if (this.ctx?.room !== room || this.ctx.chat !== chat) this.ctx = { chat, me, room, scroll, resized: this.resized, observe: this.observe, unobserve: this.unobserve };
    return this.ctx;
  }

  private maybeLoadOlder = (): void => {
    const box = this.box.current;
    const { chat } = this.props;
    const r = chat.rooms.get(chat.current);
    if (!box || !r || !r.olderToken || r.loadingOlder || r.atBeginning) return;
    // A scroll event can come between a state change and its redraw (scroll
    // events run before animation frames): judge only a page that is drawn.
    if (this.shownRoom !== r.name || this.firstSeq !== (r.list()[0]?.peek().seq ?? 0)) return;
    if (box.scrollTop < 120) void chat.loadOlder(r.name);
  };

  render(): VNode {
    const r = this.props.room;
    this.drawnKey = this.key(this.props);
    this.drawnList = r?.list() ?? none;
    return (
      <div class="messages" data-testid="messages" role="log" aria-label="Messages" tabIndex={0} ref={this.box} onScroll={this.onScroll}>
        <button type="button" class="jump-unread" data-testid="jump-unread" ref={this.jump} hidden onClick={() => void this.jumpToUnread()}>
          {"Jump to first unread \u2191"}
        </button>
        {r ? <RowContext.Provider value={this.rowCtx(r)}>{this.content(r, this.drawnList)}</RowContext.Provider> : null}
      </div>
    );
  }

  private content(r: RoomState, msgs: readonly Signal<Msg>[]): VNode[] {
    const { chat, me } = this.props;
    const out: VNode[] = [];
    if (r.status === "error") return out;
    if (r.status === "new-dm") {
      out.push(<p class="intro" key="intro">{`This is the start of your private conversation with ${roomTitle(r.name, me)}. Only the two of you can read it.`}</p>);
    } else if (r.atBeginning) {
      out.push(
        <p class="intro" data-testid="history-start" key="start">
          {isDirect(r.name) ? `This is the start of your conversation with ${roomTitle(r.name, me)}.` : `This is the beginning of #${r.name}.`}
        </p>,
      );
    } else if (r.olderToken) {
      out.push(
        <button type="button" class="link load-older" data-testid="load-older" key="older" disabled={r.loadingOlder} onClick={() => void chat.loadOlder(r.name)}>
          {r.loadingOlder ? "Loading older messages\u2026" : "Load older messages"}
        </button>,
      );
    } else if (!r.historyLoaded) {
      out.push(<p class="intro" key="loading">Loading messages{"\u2026"}</p>);
    }
    // Messages go in groups: one sender, no gap over groupGapMs, one day.
    let group: GroupProps | null = null;
    let prev: Msg | null = null;
    const groups: GroupProps[] = [];
    let divided = r.dividerSeq < 0;
    for (const s of msgs) {
      // Sender and time never change: reading them does not subscribe.
      const m = s.peek();
      if (!prev || dayStart(prev.sentAt) !== dayStart(m.sentAt)) {
        group = null;
        groups.push({ day: m.sentAt, sender: "", at: m.sentAt, mine: false, rows: [], first: m.seq });
      }
      if (!divided && m.seq > r.dividerSeq && m.sender !== me) {
        // The first message from someone else after the marker at opening.
        divided = true;
        group = null;
        groups.push({ divider: true, sender: "", at: m.sentAt, mine: false, rows: [], first: m.seq });
      }
      if (!group || prev!.sender !== m.sender || m.sentAt.getTime() - prev!.sentAt.getTime() > groupGapMs) {
        group = { sender: m.sender, at: m.sentAt, mine: m.sender === me, rows: [], first: m.seq };
        groups.push(group);
      }
      group.rows.push(s);
      prev = m;
    }
    if (r.pending.length) {
      const pending = r.pending.map((p) => <Pending key={p.clientMsgId} chat={chat} room={r.name} p={p} />);
      if (prev?.sender === me) group!.pending = pending;
      else groups.push({ sender: me, at: new Date(), mine: true, rows: [], first: -1, pending });
    }
    for (const g of groups) out.push(g.divider ? <NewDivider key={`n${g.first}`} seq={g.first} /> : g.day ? <Day key={`d${g.first}`} at={g.day} /> : <Group key={`g${g.first}`} {...g} />);
    if (msgs.length === 0 && r.historyLoaded && r.pending.length === 0) out.push(<p class="intro muted" key="empty">No messages yet. Say hello!</p>);
    return out;
  }
}

function NewDivider({ seq }: { seq: number }): VNode {
  return (
    <div class="new-divider" role="separator" data-testid="new-divider" data-seq={String(seq)}>
      <span>New messages</span>
    </div>
  );
}

function Day({ at }: { at: Date }): VNode {
  return (
    <div class="day" role="separator">
      <span>{dayLabel(at)}</span>
    </div>
  );
}

interface GroupProps {
  day?: Date;
  divider?: boolean;
  sender: string;
  at: Date;
  mine: boolean;
  rows: Signal<Msg>[];
  first: number;
  pending?: ComponentChildren;
}

// Group is one sender's run of messages. A new message redraws the last
// group only: the others get equal rows and skip their redraw.
class Group extends Component<GroupProps> {
  shouldComponentUpdate(next: GroupProps): boolean {
    const p = this.props;
    if (next.pending || p.pending || next.sender !== p.sender || next.mine !== p.mine || next.rows.length !== p.rows.length) return true;
    return next.rows.some((r, i) => r !== p.rows[i]);
  }

  render(): VNode {
    const { sender, at, mine, rows, pending } = this.props;
    return (
      <div class={mine ? "group mine" : "group"} data-testid="message-group" data-sender={sender}>
        <Avatar user={sender} />
        <div class="group-head">
          <span class="sender" data-testid="message-sender">
            {sender}
          </span>
          <time dateTime={at.toISOString()} title={fullTime(at)}>
            {clock(at)}
          </time>
        </div>
        {rows.map((s) => (
          <Row key={s.peek().seq} m={s} />
        ))}
        {pending}
      </div>
    );
  }
}

// Row is one message. It reads its signal, so it redraws when that changes,
// and only then: a redraw of the list passes it the same signal, which
// @preact/signals takes as nothing to do. A reply also reads the signal of
// the message it quotes, so the quote follows that message's edits.
function Row({ m }: { m: Signal<Msg> }): VNode {
  const ctx = useContext(RowContext)!;
  const { chat, me, room } = ctx;
  const v = m.value;
  const [chosen, setMode] = useState<"" | "edit" | "react">("");
  const [error, setError] = useState("");
  const drawn = useRef(false);
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const row = el.current!;
    ctx.observe(row);
    return () => ctx.unobserve(row);
  }, []);
  // Reading the version redraws the row when a receipt moves.
  void room.receiptsVersion.value;
  const seenBy = room.seenBy(v.seq);
  const mentioned = v.mentions.includes(me);
  useLayoutEffect(() => {
    if (drawn.current) ctx.resized();
    drawn.current = true;
  });
  const mine = v.sender === me;
  const mode = v.deleted ? "" : chosen;

  const run = async (p: Promise<string>, after = () => {}): Promise<void> => {
    setError("");
    const err = await p;
    setError(err);
    if (!err) after();
  };
  const toggle = (emoji: string, on: boolean) => {
    setMode("");
    void run(chat.react(room.name, v.seq, emoji, on));
  };
  const remove = () => {
    if (!window.confirm("Delete this message? Everyone in the room will see that a message was deleted.")) return;
    void run(chat.remove(room.name, v.seq));
  };

  return (
    <div
      ref={el}
      class={["msg", v.deleted ? "deleted" : "", mode ? "active" : "", mentioned ? "mentions-me" : ""].join(" ")}
      data-testid="message"
      data-mentions-me={mentioned ? "" : undefined}
      data-seq={String(v.seq)}
      data-sender={v.sender}
      data-deleted={v.deleted ? "" : undefined}
    >
      <time class="t" dateTime={v.sentAt.toISOString()} title={fullTime(v.sentAt)}>
        {clock(v.sentAt)}
      </time>
      {v.replyToSeq ? <Quote room={room} v={v} /> : null}
      {mode === "edit" ? (
        <EditForm
          body={v.body}
          cancel={() => {
            setError("");
            setMode("");
          }}
          save={(body) => (body === v.body ? setMode("") : void run(chat.edit(room.name, v.seq, body), () => setMode("")))}
        />
      ) : (
        <div class="body">
          <span data-testid="message-body">{mentioned ? highlight(v.body, me) : v.body}</span>
          {v.deleted ? (
            <span class="tombstone" data-testid="message-deleted">
              message deleted
            </span>
          ) : null}
          {v.edited && !v.deleted ? (
            <span class="edited" data-testid="message-edited" title="This message was edited">
              (edited)
            </span>
          ) : null}
        </div>
      )}
      {v.reactions.length ? (
        <div class="reactions" role="group" aria-label="Reactions">
          {v.reactions.map((x) => (
            <button
              type="button"
              key={x.emoji}
              class={x.mine ? "chip mine" : "chip"}
              data-testid="reaction"
              data-emoji={x.emoji}
              data-count={String(x.count)}
              aria-pressed={x.mine}
              title={reactedBy(x.users, x.count, me) + (x.mine ? " (click to take yours back)" : "")}
              onClick={() => toggle(x.emoji, !x.mine)}
            >
              <span class="emoji">{x.emoji}</span>
              <span class="count">{x.count}</span>
            </button>
          ))}
        </div>
      ) : null}
      {mode === "react" ? (
        <div class="picker" role="group" aria-label="Pick a reaction" data-testid="reaction-picker">
          {Emojis.map((e) => {
            const on = !!v.reactions.find((x) => x.emoji === e && x.mine);
            return (
              <button type="button" key={e} class={on ? "mine" : ""} data-testid="pick-reaction" data-emoji={e} aria-pressed={on} onClick={() => toggle(e, !on)}>
                {e}
              </button>
            );
          })}
          <button type="button" class="link" onClick={() => setMode("")}>
            Close
          </button>
        </div>
      ) : null}
      {seenBy.length ? (
        <div class="seen-by" data-testid="seen-by" aria-label={`Seen by ${seenBy.join(", ")}`} title={`Seen by ${seenBy.join(", ")}`}>
          {seenBy.map((u) => (
            <span key={u} class="seen" data-testid="seen-by-user" data-user={u}>
              <Avatar user={u} small />
            </span>
          ))}
        </div>
      ) : null}
      {error ? (
        <div class="row-error" role="alert" data-testid="message-error">
          {error}
        </div>
      ) : null}
      {!v.deleted && mode !== "edit" ? (
        <div class="actions" role="toolbar" aria-label="Message actions">
          <button type="button" data-testid="action-reply" aria-label="Reply" title="Reply" onClick={() => ctx.scroll.reply(v.seq)}>
            {"\u21A9"}
          </button>
          <button type="button" data-testid="action-react" aria-label="React" title="React" aria-expanded={mode === "react"} onClick={() => setMode(mode === "react" ? "" : "react")}>
            {"\u263A"}
          </button>
          {mine ? (
            <button type="button" data-testid="action-edit" aria-label="Edit" title="Edit" onClick={() => setMode("edit")}>
              {"\u270E"}
            </button>
          ) : null}
          {mine ? (
            <button type="button" data-testid="action-delete" aria-label="Delete" title="Delete" onClick={remove}>
              {"\u{1F5D1}"}
            </button>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

// Quote is the message a reply answers: the page's own copy when it holds
// it (live: edits and deletes show), else how history quoted it.
function Quote({ room, v }: { room: RoomState; v: Msg }): VNode {
  const parent = room.get(v.replyToSeq)?.value;
  const q = parent ? { sender: parent.sender, snippet: quoteText(parent.body), deleted: parent.deleted } : v.replyTo;
  const jump = () => {
    const el = document.querySelector<HTMLElement>(`[data-testid="messages"] [data-seq="${v.replyToSeq}"]`);
    if (!el) return;
    el.scrollIntoView({ block: "center" });
    el.classList.add("flash");
    window.setTimeout(() => el.classList.remove("flash"), 1200);
  };
  return (
    <button type="button" class="quote" data-testid="message-quote" data-reply-to={String(v.replyToSeq)} onClick={jump} title="Show the message replied to">
      {q ? <span class="quote-sender">{q.sender}</span> : null}
      <span class="quote-text">{!q ? "an earlier message" : q.deleted ? "message deleted" : q.snippet}</span>
    </button>
  );
}

function EditForm({ body, save, cancel }: { body: string; save(body: string): void; cancel(): void }): VNode {
  const input = useRef<HTMLTextAreaElement>(null);
  // A layout effect, not useEffect: Preact runs useEffect after the next
  // paint, so a user (or a test) could already have selected or typed in
  // the shown textarea, and moving the cursor then would put their text
  // after the old one instead of replacing it.
  useLayoutEffect(() => {
    const el = input.current!;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);
  const submit = (ev?: Event) => {
    ev?.preventDefault();
    const text = input.current!.value;
    if (text.trim()) save(text);
  };
  return (
    <form class="edit" data-testid="edit-form" onSubmit={submit}>
      <textarea
        ref={input}
        rows={2}
        aria-label="Edit the message"
        data-testid="edit-input"
        defaultValue={body}
        onKeyDown={(ev) => {
          if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) submit(ev);
          else if (ev.key === "Escape") cancel();
        }}
      />
      <div class="edit-buttons">
        <button type="submit" class="primary small" data-testid="edit-save">
          Save
        </button>
        <button type="button" class="ghost small" data-testid="edit-cancel" onClick={cancel}>
          Cancel
        </button>
        <span class="muted">Enter to save, Esc to cancel</span>
      </div>
    </form>
  );
}

// highlight marks the user's own @mentions in a text the server says
// mentions them: "@me" not followed by a character a user id goes on with
// (a trailing dot is punctuation).
function highlight(body: string, me: string): ComponentChildren {
  const at = "@" + me;
  const out: ComponentChildren[] = [];
  let from = 0;
  for (let i = body.indexOf(at); i >= 0; i = body.indexOf(at, i + 1)) {
    const next = body.slice(i + at.length).replace(/^\.+/, "");
    const nextChar = body[i + at.length] ?? "";
    if (/[A-Za-z0-9_-]/.test(nextChar) || (nextChar === "." && /^[A-Za-z0-9_-]/.test(next))) continue;
    if (i > 0 && /[A-Za-z0-9._-]/.test(body[i - 1])) continue;
    out.push(body.slice(from, i), <mark class="mention" data-testid="mention">{at}</mark>);
    from = i + at.length;
  }
  out.push(body.slice(from));
  return out;
}

// reactedBy names who reacted, as far as the page knows them.
function reactedBy(users: string[], count: number, me: string): string {
  const names = users.map((u) => (u === me ? "you" : u));
  const more = count - names.length;
  if (more > 0) names.push(more === 1 ? "1 other" : `${more} others`);
  return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

function Pending({ chat, room, p }: { chat: Chat; room: string; p: PendingSend }): VNode {
  const status =
    p.state === "sending" ? (
      <span class="status">{chat.conn === "online" ? "Sending\u2026" : "Waiting for the connection\u2026"}</span>
    ) : (
      <span class="status failed" role="alert">
        {`Not sent: ${p.error ?? "error"}. `}
        <button type="button" class="link" data-testid="retry-send" onClick={() => chat.retry(room, p.clientMsgId)}>
          Retry
        </button>
        {" \u00b7 "}
        <button type="button" class="link" onClick={() => chat.discard(room, p.clientMsgId)}>
          Discard
        </button>
      </span>
    );
  return (
    <div class={`msg pending ${p.state}`} data-testid="pending-message" data-state={p.state}>
      <span class="t" />
      <div class="body">
        {p.body}
        {status}
      </div>
    </div>
  );
}
