// The message list of the open room. It redraws when the room's list of
// messages or its paging changes, not for every change of the chat; each
// message is a component that reads its own signal, so a change to one
// message (an edit, a reaction) redraws that message alone.
import type { Signal } from "@preact/signals";
import { Component, createRef, type ComponentChildren, type VNode } from "preact";
import { Avatar } from "./avatar";
import type { Chat } from "./chat";
import { clock, dayLabel, dayStart, fullTime } from "./format";
import { isDirect, roomTitle, type Msg, type PendingSend, type RoomState } from "./room";

const groupGapMs = 5 * 60 * 1000;
const none: readonly Signal<Msg>[] = [];

/** Scroll is what the list needs from the page around it. */
export interface Scroll {
  /** Set when the user sent a message: the next draw scrolls to the bottom. */
  stickToBottom: boolean;
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

  // Everything but the messages themselves that the list shows.
  private key({ chat, room: r }: Props): string {
    if (!r) return "";
    const pending = r.pending.map((p) => p.clientMsgId + p.state).join();
    return [r.name, r.status, r.atBeginning, r.loadingOlder, r.historyLoaded, !!r.olderToken, pending, pending && chat.conn].join("|");
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
    this.shownRoom = r?.name ?? "";
    this.firstSeq = first;
    if (r) requestAnimationFrame(() => this.maybeLoadOlder());
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
      <div class="messages" data-testid="messages" role="log" aria-label="Messages" tabIndex={0} ref={this.box} onScroll={this.maybeLoadOlder}>
        {r ? this.content(r, this.drawnList) : null}
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
    for (const s of msgs) {
      // Sender and time never change: reading them does not subscribe.
      const m = s.peek();
      if (!prev || dayStart(prev.sentAt) !== dayStart(m.sentAt)) {
        group = null;
        groups.push({ day: m.sentAt, sender: "", at: m.sentAt, mine: false, rows: [], first: m.seq });
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
    for (const g of groups) out.push(g.day ? <Day key={`d${g.first}`} at={g.day} /> : <Group key={`g${g.first}`} {...g} />);
    if (msgs.length === 0 && r.historyLoaded && r.pending.length === 0) out.push(<p class="intro muted" key="empty">No messages yet. Say hello!</p>);
    return out;
  }
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
// @preact/signals takes as nothing to do.
function Row({ m }: { m: Signal<Msg> }): VNode {
  const v = m.value;
  return (
    <div class="msg" data-testid="message" data-seq={String(v.seq)} data-sender={v.sender}>
      <time class="t" dateTime={v.sentAt.toISOString()} title={fullTime(v.sentAt)}>
        {clock(v.sentAt)}
      </time>
      <div class="body" data-testid="message-body">
        {v.body}
      </div>
    </div>
  );
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
