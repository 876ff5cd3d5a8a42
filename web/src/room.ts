// RoomState: what the page knows about one room — its messages (deduplicated
// by seq), history paging, presence, typing and sends not yet acknowledged.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { signal, type Signal } from "@preact/signals";
import type { Message, MessageDelete, MessageEdit, Presence, PresenceMeta, Reaction, ReadMarker, Room } from "./gen/parley/v1/types_pb";

/** Msg is a stored message as the page shows it. */
export interface Msg {
  seq: number;
  sender: string;
  body: string;
  sentAt: Date;
  clientMsgId: string;
  /** The message this one replies to; 0 for none. */
  replyToSeq: number;
  /** How history quoted the message replied to, for one the page does not hold. */
  replyTo?: { sender: string; snippet: string; deleted: boolean };
  edited: boolean;
  deleted: boolean;
  reactions: Reactions[];
  /** The users the text mentions, as the server parsed them. */
  mentions: string[];
  /** The seq of the newest entry of the log folded into this view. */
  viewSeq: number;
}

/** Reactions is one emoji's reactions to a message. */
export interface Reactions {
  emoji: string;
  count: number;
  /** Whether the signed-in user is one of them. */
  mine: boolean;
  /** Some of the users, oldest first (history names the first few only). */
  users: string[];
}

/** Entry is a change to a message: an edit, a delete or a reaction. */
export type Entry =
  | { kind: "edit"; value: MessageEdit }
  | { kind: "delete"; value: MessageDelete }
  | { kind: "reactionAdded" | "reactionRemoved"; value: Reaction };

// maxOrphans bounds the entries kept for messages the page does not hold yet.
const maxOrphans = 500;

/** PendingSend is a message the server has not acknowledged yet. */
export interface PendingSend {
  clientMsgId: string;
  body: string;
  /** The message this one replies to; 0 for none. */
  replyToSeq: number;
  state: "sending" | "failed";
  error?: string;
  /** The timer of a resend the server asked to wait for (sending too fast). */
  retryTimer?: number;
}

/**
 * RoomStatus is where the page stands with a room: idle (not joined),
 * joining, joined, new-dm (a direct conversation that does not exist until
 * its first message) or error (the server refused; see error).
 */
export type RoomStatus = "idle" | "joining" | "joined" | "new-dm" | "error";

/** RoomState is one room's client-side state. */
export class RoomState {
  info?: Room;
  /** The user wants to be in the room: it is (re)joined on every connect. */
  wanted = false;
  /**
   * The room is on the stream quietly, out of its presence, for its badge
   * alone (see Chat.followAll); status tells how far the join got.
   */
  quiet = false;
  status: RoomStatus = "idle";
  error = "";
  /** Highest seq received; the messages up to it are contiguous. */
  lastSeq = 0;
  /** The user's read marker: the seq read up to, as the server last said or as marked here; 0 if never. */
  readSeq = 0;
  /**
   * The marker when the room was opened: the "new messages" divider goes
   * after it, and stays while the room is shown. -1 while not known.
   */
  dividerSeq = -1;
  /** How far each other reader has read the room ("seen by"); empty in big rooms. */
  receipts = new Map<string, number>();
  /** Bumped when receipts change: the message rows that show them read it. */
  readonly receiptsVersion = signal(0);
  /** The room's unread count when it was opened, for "jump to first unread". */
  unreadAtOpen = 0;
  // The server's counts (ListRooms or a read_marker) through countHead;
  // messages after countHead that this page counted itself, by seq, with
  // whether each mentions the user.
  private baseUnread = 0;
  private baseMentions = 0;
  private countHead = 0;
  private counted = new Map<number, boolean>();
  historyLoaded = false;
  historyLoading = false;
  olderToken = "";
  atBeginning = false;
  loadingOlder = false;
  /**
   * The presence the server keeps live: everyone in a small room, the first
   * page in a big one (its diffs name only what comes into or goes out of
   * that page; see docs/clients.md).
   */
  presence = new Map<string, Map<string, PresenceMeta>>();
  /**
   * In a big room, the users of the pages loaded past the first: a snapshot
   * as of when each page came (diffs do not name them), dropped with the
   * presence on a rejoin.
   */
  presenceMore = new Map<string, Map<string, PresenceMeta>>();
  /** Distinct users online, as the server counted them in the joined state and in each diff since. */
  online = 0;
  /**
   * In a big room, the token of the next page of presence; "" once every
   * user online is loaded (always, in a small room).
   */
  presenceNext = "";
  presenceLoading = false;
  typing = new Map<string, number>();
  pending: PendingSend[] = [];
  members?: string[];
  // Each message is a signal: a change to one message (update) redraws
  // that message alone. The list in seq order is a new array when one is
  // added, and the same array otherwise.
  private msgs = new Map<number, Signal<Msg>>();
  private sortedCache: Signal<Msg>[] | null = [];
  // Entries whose message is not here yet: a page of history asked for
  // before they were stored may arrive after them.
  private orphans: Entry[] = [];

  constructor(
    readonly name: string,
    private readonly me = "",
  ) {}

  /**
   * add stores a message unless its seq is known; it reports whether it was
   * new. viewSeq is the seq up to which m's view fields (edits, reactions)
   * are folded in: the head of a page of history, or m's own seq for a
   * message as sent. A known message takes a newer view.
   */
  add(m: Message, viewSeq = Number(m.seq)): boolean {
    const seq = Number(m.seq);
    const known = this.msgs.get(seq);
    if (known && known.peek().viewSeq >= viewSeq) return false;
    const v: Msg = {
      seq,
      sender: m.sender,
      body: m.body,
      sentAt: m.sentAt ? timestampDate(m.sentAt) : new Date(),
      clientMsgId: m.clientMsgId,
      replyToSeq: Number(m.replyToSeq),
      replyTo: m.replyTo ? { sender: m.replyTo.sender, snippet: m.replyTo.snippet, deleted: m.replyTo.deleted } : undefined,
      edited: !!m.editedAt,
      deleted: m.deleted,
      reactions: m.reactions.map((r) => ({ emoji: r.emoji, count: r.count, mine: r.mine, users: [...r.users] })),
      mentions: [...m.mentions],
      viewSeq,
    };
    const orphans = this.orphans.filter((e) => Number(e.value.targetSeq) === seq);
    if (orphans.length) this.orphans = this.orphans.filter((e) => Number(e.value.targetSeq) !== seq);
    const view = orphans.reduce((x, e) => fold(x, e, this.me), v);
    if (known) {
      known.value = view;
      return false;
    }
    this.msgs.set(seq, signal(view));
    this.sortedCache = null;
    if (seq > this.lastSeq) this.lastSeq = seq;
    if (m.clientMsgId) this.pending = this.pending.filter((p) => p.clientMsgId !== m.clientMsgId);
    return true;
  }

  /**
   * passed takes an entry of a room followed for its badge alone: the
   * room's position moves to it and nothing is kept, so a busy room costs
   * no memory while it is not shown. Messages held from before are
   * dropped (the view is no longer current): the newest page of history
   * loads again when the room is opened. It reports whether the entry
   * was new.
   */
  passed(seq: number): boolean {
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    if (this.msgs.size || this.orphans.length) {
      this.msgs.clear();
      this.sortedCache = null;
      this.orphans = [];
      this.historyLoaded = false;
      this.olderToken = "";
      this.atBeginning = false;
    }
    return true;
  }

  /**
   * apply folds an edit, delete or reaction into its message; the room's
   * position moves to its seq either way. An entry the message's view
   * holds already changes nothing; one for a message not here is kept for
   * when it comes (a page of history). It reports whether a message changed.
   */
  apply(e: Entry): boolean {
    const seq = Number(e.value.seq);
    if (seq > this.lastSeq) this.lastSeq = seq;
    const m = this.msgs.get(Number(e.value.targetSeq));
    if (!m) {
      this.orphans.push(e);
      if (this.orphans.length > maxOrphans) this.orphans.shift();
      return false;
    }
    const v = m.peek();
    if (seq <= v.viewSeq) return false;
    m.value = fold(v, e, this.me);
    return true;
  }

  /** get returns a stored message's signal. */
  get(seq: number): Signal<Msg> | undefined {
    return this.msgs.get(seq);
  }

  /** update changes what a stored message shows; it reports whether the message is known. */
  update(seq: number, patch: Partial<Omit<Msg, "seq" | "sender" | "sentAt">>): boolean {
    const m = this.msgs.get(seq);
    if (!m) return false;
    m.value = { ...m.peek(), ...patch };
    return true;
  }

  /** list returns the stored messages in seq order, each a signal of its current state. */
  list(): readonly Signal<Msg>[] {
    if (!this.sortedCache) this.sortedCache = [...this.msgs.values()].sort((a, b) => a.peek().seq - b.peek().seq);
    return this.sortedCache;
  }

  /** messages returns the stored messages in seq order. */
  messages(): Msg[] {
    return this.list().map((m) => m.peek());
  }

  /** headSeq is the newest seq known, from messages or the room list. */
  headSeq(): number {
    return Math.max(this.lastSeq, Number(this.info?.lastSeq ?? 0n));
  }

  /** unread is the number of messages from others after the read marker, from the server's counts and live messages. */
  unread(): number {
    let n = this.baseUnread;
    for (const seq of this.counted.keys()) if (seq > this.readSeq) n++;
    return n;
  }

  /** mentions is how many of the unread messages mention the user (every one in a direct room). */
  mentions(): number {
    let n = this.baseMentions;
    for (const [seq, mention] of this.counted) if (mention && seq > this.readSeq) n++;
    return n;
  }

  /**
   * listed takes the counts of a room list. A list that has not seen a mark
   * made here since (its marker is behind) keeps the counts as they are.
   */
  listed(info: Room): void {
    this.info = info;
    const seq = Number(info.lastReadSeq);
    if (seq < this.readSeq) return;
    this.setCounts(seq, info.unreadCount, info.mentionCount, Number(info.lastSeq));
  }

  /** marked takes a read marker from the server: the counts are its own through its head. */
  marked(m: ReadMarker): void {
    if (Number(m.seq) < this.readSeq) return;
    this.setCounts(Number(m.seq), m.unreadCount, m.mentionCount, Number(m.headSeq));
  }

  private setCounts(seq: number, unread: number, mentions: number, head: number): void {
    this.readSeq = seq;
    this.baseUnread = unread;
    this.baseMentions = mentions;
    this.countHead = Math.max(head, seq);
    for (const s of this.counted.keys()) if (s <= this.countHead) this.counted.delete(s);
  }

  /**
   * readTo moves the marker forward here, before the server answers: what
   * was counted up to seq is read, and the server's counts too once seq
   * reaches their head. It reports whether the marker moved.
   */
  readTo(seq: number): boolean {
    if (seq <= this.readSeq) return false;
    this.readSeq = seq;
    for (const s of this.counted.keys()) if (s <= seq) this.counted.delete(s);
    if (seq >= this.countHead) {
      this.baseUnread = 0;
      this.baseMentions = 0;
      this.countHead = seq;
    }
    return true;
  }

  /** count counts a live message from someone else as unread, if it is after the marker and the counts. */
  count(m: Message, me: string): void {
    const seq = Number(m.seq);
    if (m.sender === me || seq <= this.readSeq || seq <= this.countHead) return;
    this.counted.set(seq, isDirect(this.name) || m.mentions.includes(me));
  }

  /** recount follows an edit (its mentions) or a delete (no longer unread) of a message counted here. */
  recount(e: Entry, me: string): void {
    const target = Number(e.value.targetSeq);
    if (!this.counted.has(target)) return;
    if (e.kind === "delete") this.counted.delete(target);
    else if (e.kind === "edit") this.counted.set(target, isDirect(this.name) || e.value.mentions.includes(me));
  }

  /** receiptsChanged redraws the "seen by" of the rows. */
  receiptsChanged(): void {
    this.receiptsVersion.value++;
  }

  /** seenBy lists the other readers whose marker is at message seq: the last loaded message at or before it. */
  seenBy(seq: number): string[] {
    const out: string[] = [];
    for (const [user, read] of this.receipts) if (read >= seq && this.lastAtOrBefore(read) === seq) out.push(user);
    return out.sort();
  }

  // lastAtOrBefore is the seq of the last loaded message at or before seq; 0 if none.
  private lastAtOrBefore(seq: number): number {
    const list = this.list();
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].peek().seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo ? list[lo - 1].peek().seq : 0;
  }

  /**
   * setPresence replaces the presence state with a joined event's: every
   * user in a small room, the first page in a big one (next is set).
   */
  setPresence(list: Presence[], online = list.length, next = ""): void {
    this.presence.clear();
    this.presenceMore.clear();
    this.online = online;
    this.applyPresence(list, []);
    this.presenceNext = next;
  }

  /**
   * addPresencePage adds the next page of a big room's presence past the
   * first: it is shown as it came, as fresh as when it was answered.
   */
  addPresencePage(list: Presence[], next: string): void {
    for (const p of list) {
      let metas = this.presenceMore.get(p.user);
      if (!metas) this.presenceMore.set(p.user, (metas = new Map()));
      for (const m of p.metas) metas.set(m.connId, m);
    }
    this.presenceNext = next;
  }

  /**
   * applyPresence applies a diff to the live presence: metas are keyed by
   * connection, as in Phoenix. In a big room the diff is of the first page
   * (a user can come into it or go out of it by moving as others come and
   * go), so applying it keeps exactly the first page; online is the count
   * after the diff.
   */
  applyPresence(joins: Presence[], leaves: Presence[], online?: number): void {
    if (online !== undefined) this.online = online;
    for (const p of joins) {
      let metas = this.presence.get(p.user);
      if (!metas) this.presence.set(p.user, (metas = new Map()));
      for (const m of p.metas) metas.set(m.connId, m);
    }
    for (const p of leaves) {
      const metas = this.presence.get(p.user);
      if (!metas) continue;
      for (const m of p.metas) metas.delete(m.connId);
      if (metas.size === 0) this.presence.delete(p.user);
    }
  }

  /**
   * shownPresence is who the people list shows: the live presence, then
   * the users of the later pages loaded that it does not hold.
   */
  shownPresence(): [string, Map<string, PresenceMeta>][] {
    const out = [...this.presence.entries()];
    for (const [user, metas] of this.presenceMore) if (!this.presence.has(user)) out.push([user, metas]);
    return out;
  }

  /** onlineCount is the number of distinct users online, live when joined. */
  onlineCount(): number {
    return this.status === "joined" ? this.online || this.presence.size : (this.info?.onlineCount ?? 0);
  }

  /** reset forgets the live state of a room that was left. */
  reset(): void {
    this.status = "idle";
    this.quiet = false;
    this.setPresence([]);
    for (const t of this.typing.values()) window.clearTimeout(t);
    this.typing.clear();
  }
}

// fold returns the view of a message after one entry; the entry is newer
// than the view.
function fold(v: Msg, e: Entry, me: string): Msg {
  const seq = Number(e.value.seq);
  if (seq <= v.viewSeq) return v;
  switch (e.kind) {
    case "edit":
      return { ...v, body: e.value.body, mentions: [...e.value.mentions], edited: true, viewSeq: seq };
    case "delete":
      return { ...v, body: "", deleted: true, reactions: [], mentions: [], viewSeq: seq };
    case "reactionAdded": {
      const { emoji, sender } = e.value;
      const i = v.reactions.findIndex((r) => r.emoji === emoji);
      const reactions = [...v.reactions];
      if (i < 0) reactions.push({ emoji, count: 1, mine: sender === me, users: [sender] });
      else {
        const r = reactions[i];
        reactions[i] = { ...r, count: r.count + 1, mine: r.mine || sender === me, users: r.users.includes(sender) ? r.users : [...r.users, sender] };
      }
      return { ...v, reactions, viewSeq: seq };
    }
    case "reactionRemoved": {
      const { emoji, sender } = e.value;
      const reactions = v.reactions
        .map((r) => (r.emoji !== emoji ? r : { ...r, count: r.count - 1, mine: r.mine && sender !== me, users: r.users.filter((u) => u !== sender) }))
        .filter((r) => r.count > 0);
      return { ...v, reactions, viewSeq: seq };
    }
    default:
      return v;
  }
}

/** isDirect tells a direct room's name ("dm:<a>:<b>"). */
export function isDirect(name: string): boolean {
  return name.startsWith("dm:");
}

/** dmUsers returns the two users of a direct room. */
export function dmUsers(name: string): [string, string] | null {
  const parts = name.split(":");
  return parts.length === 3 && parts[0] === "dm" ? [parts[1], parts[2]] : null;
}

/** dmName returns the canonical direct room of two users. */
export function dmName(a: string, b: string): string {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/** roomTitle is what the page calls a room: the other user for a direct room. */
export function roomTitle(name: string, me: string): string {
  const users = dmUsers(name);
  if (!users) return name;
  if (users[0] === me) return users[1];
  if (users[1] === me) return users[0];
  return `${users[0]} & ${users[1]}`;
}

/** roomHref is the page's address for a room (the room name, never a token). */
export function roomHref(name: string): string {
  return "#/r/" + encodeURIComponent(name);
}
