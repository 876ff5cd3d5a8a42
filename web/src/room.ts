// RoomState: what the page knows about one room — its messages (deduplicated
// by seq), history paging, presence, typing and sends not yet acknowledged.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { signal, type Signal } from "@preact/signals";
import type { Message, Presence, PresenceMeta, Room } from "./gen/parley/v1/types_pb";

/** Msg is a stored message as the page shows it. */
export interface Msg {
  seq: number;
  sender: string;
  body: string;
  sentAt: Date;
  clientMsgId: string;
}

/** PendingSend is a message the server has not acknowledged yet. */
export interface PendingSend {
  clientMsgId: string;
  body: string;
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
  status: RoomStatus = "idle";
  error = "";
  /** Highest seq received; the messages up to it are contiguous. */
  lastSeq = 0;
  /** Seq up to which the user has seen the room; -1 if never. */
  lastRead = -1;
  historyLoaded = false;
  historyLoading = false;
  olderToken = "";
  atBeginning = false;
  loadingOlder = false;
  presence = new Map<string, Map<string, PresenceMeta>>();
  typing = new Map<string, number>();
  pending: PendingSend[] = [];
  members?: string[];
  // Each message is a signal: a change to one message (update) redraws
  // that message alone. The list in seq order is a new array when one is
  // added, and the same array otherwise.
  private msgs = new Map<number, Signal<Msg>>();
  private sortedCache: Signal<Msg>[] | null = [];

  constructor(readonly name: string) {}

  /** add stores a message unless its seq is known; it reports whether it was new. */
  add(m: Message): boolean {
    const seq = Number(m.seq);
    if (this.msgs.has(seq)) return false;
    this.msgs.set(
      seq,
      signal({
        seq,
        sender: m.sender,
        body: m.body,
        sentAt: m.sentAt ? timestampDate(m.sentAt) : new Date(),
        clientMsgId: m.clientMsgId,
      }),
    );
    this.sortedCache = null;
    if (seq > this.lastSeq) this.lastSeq = seq;
    if (m.clientMsgId) this.pending = this.pending.filter((p) => p.clientMsgId !== m.clientMsgId);
    return true;
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

  /** unread counts messages after lastRead; 0 for rooms never read. */
  unread(): number {
    return this.lastRead < 0 ? 0 : Math.max(0, this.headSeq() - this.lastRead);
  }

  /** setPresence replaces the presence state. */
  setPresence(list: Presence[]): void {
    this.presence.clear();
    this.applyPresence(list, []);
  }

  /** applyPresence applies a diff: metas are keyed by connection. */
  applyPresence(joins: Presence[], leaves: Presence[]): void {
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

  /** onlineCount is the number of distinct users online, live when joined. */
  onlineCount(): number {
    return this.status === "joined" ? this.presence.size : (this.info?.onlineCount ?? 0);
  }

  /** reset forgets the live state of a room that was left. */
  reset(): void {
    this.status = "idle";
    this.presence.clear();
    for (const t of this.typing.values()) window.clearTimeout(t);
    this.typing.clear();
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
