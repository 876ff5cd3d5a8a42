// Chat is the page's controller: it owns the rooms' state, the Join session
// and the unary calls, and tells the view when something changed.
import { Code, codeOf, messageOf, type Api } from "./api";
import type { JoinResponse } from "./gen/parley/v1/chat_service_pb";
import { RoomVisibility, type Reply } from "./gen/parley/v1/types_pb";
import { dmName, dmUsers, isDirect, roomHref, RoomState, type Entry } from "./room";
import { JoinSession, StreamLost, type ConnState, type Frame } from "./session";

const typingIdleMs = 3000;
const typingExpiryMs = 8000;
const pageSize = 50;
// maxOnStream is how many rooms the app keeps on its Join stream, joined
// or followed: the server takes 256 a stream unless told otherwise
// (--max-rooms-per-stream). Rooms past it keep the counts of the last list.
const maxOnStream = 240;
// After a room_visible event the rooms are listed again within
// relistMinMs plus up to relistSpreadMs, spread so that every client
// hearing of a new public room does not list at the same moment, and one
// list serves a burst; never twice within relistEveryMs.
const relistMinMs = 200;
const relistSpreadMs = 800;
const relistEveryMs = 3000;
// rateRetryMs is the wait after a refused send whose reply says none.
const rateRetryMs = 1000;
// changeWaitMs is how long an edit, delete or reaction waits for the stream.
const changeWaitMs = 10000;
// markEveryMs is the least time between two marks of one room sent to the server.
const markEveryMs = 300;

/** Chat is one signed-in user's chat. */
export class Chat {
  readonly rooms = new Map<string, RoomState>();
  current = "";
  conn: ConnState = "connecting";
  retryAt = 0;
  roomsLoaded = false;
  private session: JoinSession;
  private typingStop = new Map<string, number>();
  private relistTimer = 0;
  private relistedAt = 0;
  // The stream refused a room for the rooms it holds: follow no more
  // until the next connect.
  private streamFull = false;
  // The newest seq of the open room in view, and whether its list is at its end.
  private visibleSeq = 0;
  private atBottom = true;
  private markTimers = new Map<string, number>();
  private unsentMarks = new Set<string>();
  private markLater = new Set<string>();

  constructor(
    readonly me: string,
    private readonly token: string,
    readonly api: Api,
    private readonly changed: () => void,
    private readonly signedOut: (why: string) => void,
  ) {
    this.session = new JoinSession(location.origin, () => this.token, {
      state: (s, retryAt) => {
        this.conn = s;
        this.retryAt = retryAt ?? 0;
        this.changed();
      },
      open: () => this.onOpen(),
      event: (ev) => this.onEvent(ev),
      fatal: (why) => this.signedOut(why),
    });
  }

  /** start restores the rooms of this tab, connects and opens a room. */
  start(initialRoom: string): void {
    this.restore();
    if (initialRoom) this.open(initialRoom);
    this.session.start();
    void this.refreshRooms();
    document.addEventListener("visibilitychange", this.onVisible);
    window.addEventListener("focus", this.onVisible);
  }

  /** stop disconnects; the page is signing out. */
  stop(): void {
    window.clearTimeout(this.relistTimer);
    document.removeEventListener("visibilitychange", this.onVisible);
    window.removeEventListener("focus", this.onVisible);
    for (const t of this.markTimers.values()) window.clearTimeout(t);
    this.session.stop();
  }

  reconnectNow(): void {
    this.session.reconnectNow();
  }

  room(name: string): RoomState {
    let r = this.rooms.get(name);
    if (!r) {
      r = new RoomState(name, this.me);
      this.rooms.set(name, r);
    }
    return r;
  }

  /** open shows a room, joining it if needed. */
  open(name: string): void {
    const r = this.room(name);
    if (this.current !== name) {
      // The divider goes where the marker is now, and stays there while
      // the room is shown; until the list or the join tells, it waits.
      this.visibleSeq = 0;
      r.dividerSeq = r.info ? r.readSeq : -1;
      r.unreadAtOpen = r.info ? r.unread() : 0;
    }
    this.setCurrent(name);
    if (!r.wanted || r.status === "error" || r.status === "idle") {
      r.wanted = true;
      r.error = "";
      if (this.session.online) void this.join(r);
      else r.status = "joining";
    }
    this.markRead(r);
    this.save();
    if (r.info?.visibility === RoomVisibility.PRIVATE) void this.loadMembers(r);
    this.changed();
  }

  // setCurrent shows a room and keeps the address in step, so that a link
  // to the room shown before still works.
  private setCurrent(name: string): void {
    this.current = name;
    const href = name ? roomHref(name) : location.pathname;
    if (location.hash !== href) history.replaceState(null, "", href);
  }

  /**
   * leave leaves a room and shows another joined one. The room stays in
   * the list, followed quietly for its badge.
   */
  leave(name: string): void {
    const r = this.room(name);
    r.wanted = false;
    r.reset();
    this.session.notify({ case: "leave", value: { room: name } });
    if (this.current === name) {
      const next = [...this.rooms.values()].find((x) => x.wanted && x.name !== name);
      this.setCurrent(next?.name ?? "");
    }
    this.save();
    this.followAll();
    this.changed();
  }

  // onOpen runs on every (re)connect: rejoin every wanted room from the last
  // seq seen, then resend what was not acknowledged, in that order on the
  // stream (the server handles a stream's frames in order); then follow
  // the other listed rooms from where their counts are, and list the rooms
  // again (some may have come or gone while the stream was down).
  private onOpen(): void {
    this.streamFull = false;
    for (const r of this.rooms.values()) {
      if (!r.quiet) continue;
      // Followed on the stream that dropped: nowhere now.
      r.quiet = false;
      if (!r.wanted) r.status = "idle";
    }
    for (const r of this.rooms.values()) {
      if (!r.wanted) continue;
      if (r.status === "new-dm") {
        // Someone may have created it meanwhile; unsent firsts wait for the answer.
        void this.join(r).then(() => this.resend(r));
        continue;
      }
      void this.join(r);
      this.resend(r);
    }
    for (const name of this.unsentMarks) void this.sendMark(this.room(name));
    this.unsentMarks.clear();
    this.followAll();
    void this.refreshRooms();
  }

  private resend(r: RoomState): void {
    for (const p of r.pending) if (p.state === "sending") void this.sendPending(r, p);
  }

  private async join(r: RoomState): Promise<void> {
    if (r.quiet) {
      // Followed quietly until now: leave, and join to be seen in it.
      r.quiet = false;
      if (r.status === "joining" || r.status === "joined") this.session.notify({ case: "leave", value: { room: r.name } });
    }
    r.status = "joining";
    r.error = "";
    const afterSeq = r.lastSeq > 0 ? BigInt(r.lastSeq) : undefined;
    const reply = await this.session.request({ case: "join", value: { room: r.name, afterSeq } });
    if (!r.wanted || reply.code === StreamLost) return;
    if (reply.code === Code.NotFound && this.isMyDm(r.name)) {
      r.status = "new-dm";
    } else if (reply.code !== 0) {
      this.refused(r, reply);
    } else if (r.status === "joining") {
      r.status = "joined";
    }
    this.changed();
  }

  private refused(r: RoomState, reply: Reply): void {
    r.status = "error";
    r.wanted = false;
    r.error = refusal(reply.code, reply.error);
    for (const p of r.pending) {
      p.state = "failed";
      p.error = r.error;
    }
    this.save();
  }

  private onEvent(ev: JoinResponse["event"]): void {
    switch (ev.case) {
      case "joined": {
        const r = this.room(ev.value.room);
        r.status = "joined";
        r.setPresence(ev.value.presence, ev.value.onlineCount, ev.value.presenceNextPageToken);
        r.receipts.clear();
        for (const x of ev.value.receipts) if (x.user !== this.me) r.receipts.set(x.user, Number(x.seq));
        r.receiptsChanged();
        if (r.name === this.current && r.dividerSeq < 0) {
          r.dividerSeq = Math.max(r.readSeq, Number(ev.value.lastReadSeq));
          r.unreadAtOpen = r.unread();
        }
        // A followed room counts what comes; its history waits for it to be opened.
        if (r.wanted && !r.historyLoaded) void this.loadHistory(r);
        break;
      }
      case "message": {
        const r = this.room(ev.value.room);
        // A followed room counts its messages without keeping them.
        if (r.quiet ? r.passed(Number(ev.value.seq)) : r.add(ev.value)) {
          r.count(ev.value, this.me);
          this.clearTyping(r, ev.value.sender);
          if (r.name === this.current) this.markRead(r);
        }
        break;
      }
      case "edit":
      case "delete":
      case "reactionAdded":
      case "reactionRemoved": {
        // Every entry moves the room's position, shown or not.
        const r = this.room(ev.value.room);
        const e = { kind: ev.case, value: ev.value } as Entry;
        if (r.quiet) r.passed(Number(ev.value.seq));
        else r.apply(e);
        r.recount(e, this.me);
        if (r.name === this.current) this.markRead(r);
        break;
      }
      case "readMarker":
        // A mark made on another connection of ours, or further than ours.
        this.room(ev.value.room).marked(ev.value);
        break;
      case "receipts": {
        // Members of a small room read further; our own marker may be
        // among them, and we know it.
        const r = this.room(ev.value.room);
        let changed = false;
        for (const rc of ev.value.receipts) {
          const seq = Number(rc.seq);
          if (rc.user === this.me || seq <= (r.receipts.get(rc.user) ?? 0)) continue;
          r.receipts.set(rc.user, seq);
          changed = true;
        }
        if (!changed) return;
        r.receiptsChanged();
        break;
      }
      case "presenceDiff":
        this.room(ev.value.room).applyPresence(ev.value.joins, ev.value.leaves, ev.value.onlineCount);
        break;
      case "typing":
        this.onTyping(ev.value.room, ev.value.user, ev.value.active);
        break;
      case "roomVisible":
        // A room we may see now: a new public room, a private one we were
        // added to, a new direct conversation.
        this.relistSoon();
        return;
      case "reply": {
        // The server took us out of a room (removed from its members).
        const r = this.rooms.get(ev.value.room);
        if (!r || ev.value.code === 0) return;
        if (r.quiet && !r.wanted && ev.value.code === Code.Unavailable) {
          // A followed room's replay failed: follow it again shortly.
          r.reset();
          window.setTimeout(() => this.followAll(), rateRetryMs);
          return;
        }
        r.reset();
        r.info = undefined; // out of the list until the server lists it again
        this.refused(r, ev.value);
        break;
      }
      default:
        return; // replayed: nothing to show
    }
    this.changed();
  }

  /**
   * morePresence loads the next page of a big room's presence, on the Join
   * stream. Pages past the first are shown as they came: the room's diffs
   * keep only the first page live (docs/clients.md).
   */
  async morePresence(name: string): Promise<void> {
    const r = this.rooms.get(name);
    if (!r || r.status !== "joined" || !r.presenceNext || r.presenceLoading) return;
    r.presenceLoading = true;
    this.changed();
    const token = r.presenceNext;
    const reply = await this.session.request({ case: "presencePage", value: { room: name, pageToken: token, pageSize: 0 } });
    r.presenceLoading = false;
    // A rejoin meanwhile brought a new first page: this one is stale.
    if (reply.code === 0 && reply.presencePage && r.presenceNext === token) {
      r.addPresencePage(reply.presencePage.presence, reply.presencePage.nextPageToken);
    }
    this.changed();
  }

  private onTyping(room: string, user: string, active: boolean): void {
    if (user === this.me) return;
    const r = this.room(room);
    this.clearTyping(r, user);
    if (active) r.typing.set(user, window.setTimeout(() => this.clearTyping(r, user, true), typingExpiryMs));
  }

  private clearTyping(r: RoomState, user: string, notify = false): void {
    const t = r.typing.get(user);
    if (t === undefined) return;
    window.clearTimeout(t);
    r.typing.delete(user);
    if (notify) this.changed();
  }

  /** typed tells the room that the user is typing; it stops after a pause. */
  typed(): void {
    const r = this.rooms.get(this.current);
    if (!r || r.status !== "joined") return;
    const name = r.name;
    if (!this.typingStop.has(name)) this.session.notify({ case: "typing", value: { room: name, active: true } });
    window.clearTimeout(this.typingStop.get(name));
    this.typingStop.set(name, window.setTimeout(() => this.stopTyping(name), typingIdleMs));
  }

  private stopTyping(room: string): void {
    if (!this.typingStop.has(room)) return;
    window.clearTimeout(this.typingStop.get(room));
    this.typingStop.delete(room);
    this.session.notify({ case: "typing", value: { room, active: false } });
  }

  /** send posts a message to the current room, maybe a reply; it is retried until acknowledged. */
  send(body: string, replyToSeq = 0): void {
    const r = this.rooms.get(this.current);
    if (!r || !body.trim()) return;
    this.stopTyping(r.name);
    const p = { clientMsgId: crypto.randomUUID(), body, replyToSeq, state: "sending" as const };
    r.pending.push(p);
    void this.sendPending(r, p);
    this.changed();
  }

  /** retry sends a failed message again, with the same client_msg_id. */
  retry(room: string, clientMsgId: string): void {
    const r = this.room(room);
    const p = r.pending.find((x) => x.clientMsgId === clientMsgId);
    if (!p) return;
    p.state = "sending";
    p.error = undefined;
    if (r.status === "error") this.open(room);
    void this.sendPending(r, p);
    this.changed();
  }

  /** discard drops a message that was not sent. */
  discard(room: string, clientMsgId: string): void {
    const r = this.room(room);
    for (const p of r.pending) if (p.clientMsgId === clientMsgId) window.clearTimeout(p.retryTimer);
    r.pending = r.pending.filter((x) => x.clientMsgId !== clientMsgId);
    this.changed();
  }

  private async sendPending(r: RoomState, p: RoomState["pending"][number]): Promise<void> {
    if (r.status === "new-dm") return this.sendFirstDirect(r, p);
    window.clearTimeout(p.retryTimer); // a resend on reconnect replaces a scheduled one
    p.retryTimer = undefined;
    if (!this.session.online || r.status === "error") return; // sent on the next connect
    const reply = await this.session.request({
      case: "send",
      value: { room: r.name, body: p.body, clientMsgId: p.clientMsgId, replyToSeq: BigInt(p.replyToSeq) },
    });
    if (reply.code === StreamLost) return; // resent on the next connect
    if (reply.code === Code.ResourceExhausted) {
      // Sending too fast: the same message, same id, when the server says.
      p.retryTimer = window.setTimeout(() => void this.sendPending(r, p), retryDelayMs(reply));
      return;
    }
    if (reply.code === 0 && reply.message) {
      r.add(reply.message);
      if (r.name === this.current) this.markRead(r);
    } else if (reply.code !== 0) {
      p.state = "failed";
      p.error = refusal(reply.code, reply.error);
    }
    this.changed();
  }

  // sendFirstDirect creates a direct room by sending to the other user, then
  // joins the room the server named.
  private async sendFirstDirect(r: RoomState, p: RoomState["pending"][number]): Promise<void> {
    const other = this.dmOther(r.name);
    try {
      const resp = await this.api.sendMessage({ toUser: other, body: p.body, clientMsgId: p.clientMsgId, replyToSeq: BigInt(p.replyToSeq) });
      const msg = resp.message!;
      const real = this.room(msg.room || r.name);
      if (real !== r) {
        real.pending.push(...r.pending.filter((x) => x !== p));
        r.pending = [];
        r.wanted = false;
        if (this.current === r.name) this.setCurrent(real.name);
      }
      real.add(msg);
      real.wanted = true;
      real.status = "joining";
      this.markRead(real);
      this.save();
      if (this.session.online) await this.join(real);
      void this.refreshRooms();
    } catch (err) {
      // Lost on the way: stays "sending" and goes again, same id, on the next connect.
      if (!transient(codeOf(err))) {
        p.state = "failed";
        p.error = messageOf(err);
      }
    }
    this.changed();
  }

  /** edit replaces the text of one of the user's messages; it returns an error to show, or "". */
  edit(room: string, seq: number, body: string): Promise<string> {
    if (!body.trim()) return Promise.resolve("a message cannot be empty: delete it instead");
    return this.change({ case: "edit", value: { room, seq: BigInt(seq), body, clientMsgId: crypto.randomUUID() } });
  }

  /** remove deletes a message; it returns an error to show, or "". */
  remove(room: string, seq: number): Promise<string> {
    return this.change({ case: "delete", value: { room, seq: BigInt(seq), clientMsgId: crypto.randomUUID() } });
  }

  /** react adds (on) or takes back the user's reaction; it returns an error to show, or "". */
  react(room: string, seq: number, emoji: string, on: boolean): Promise<string> {
    return this.change({ case: on ? "react" : "unreact", value: { room, seq: BigInt(seq), emoji, clientMsgId: crypto.randomUUID() } });
  }

  // change sends an edit, delete or reaction over the Join stream. What it
  // changes is shown when its event comes back, as for everyone else in the
  // room. A refusal for the send rate goes again, same id, when the server
  // says; a frame cut off by a dropped stream goes again once it is back
  // (the id makes that safe).
  private async change(frame: Frame): Promise<string> {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (!this.session.online) await this.session.whenOnline(changeWaitMs);
      if (!this.session.online) return "not connected: try again when the connection is back";
      const reply = await this.session.request(frame);
      if (reply.code === 0) return "";
      if (reply.code === StreamLost) continue;
      if (reply.code !== Code.ResourceExhausted) return refusal(reply.code, reply.error);
      await new Promise((resolve) => window.setTimeout(resolve, retryDelayMs(reply)));
    }
    return "the server is busy: try again";
  }

  /** startDirect opens the direct conversation with user. */
  startDirect(user: string): string {
    user = user.trim();
    if (!user) return "type a user name";
    if (user === this.me) return "that is you: pick someone else";
    this.open(dmName(this.me, user));
    return "";
  }

  /** createRoom creates a room and opens it; it returns an error to show, or "". */
  async createRoom(name: string, priv: boolean): Promise<string> {
    try {
      const resp = await this.api.createRoom({
        name,
        visibility: priv ? RoomVisibility.PRIVATE : RoomVisibility.PUBLIC,
      });
      this.room(name).info = resp.room;
      this.open(name);
      void this.refreshRooms();
      return "";
    } catch (err) {
      return messageOf(err);
    }
  }

  /** addMember adds a user to a private room; it returns an error to show, or "". */
  async addMember(room: string, user: string): Promise<string> {
    try {
      await this.api.addMember({ room, user: user.trim() });
      await this.loadMembers(this.room(room));
      return "";
    } catch (err) {
      return messageOf(err);
    }
  }

  /** removeMember removes a user from a private room; it returns an error to show, or "". */
  async removeMember(room: string, user: string): Promise<string> {
    try {
      await this.api.removeMember({ room, user });
      await this.loadMembers(this.room(room));
      return "";
    } catch (err) {
      return messageOf(err);
    }
  }

  async loadMembers(r: RoomState): Promise<void> {
    try {
      r.members = (await this.api.listMembers({ room: r.name })).members;
    } catch {
      r.members = undefined;
    }
    this.changed();
  }

  /** loadHistory loads the newest page of a room's history. */
  private async loadHistory(r: RoomState): Promise<void> {
    if (r.historyLoading) return;
    r.historyLoading = true;
    try {
      const resp = await this.api.listMessages({ room: r.name, limit: pageSize });
      for (const m of resp.messages) r.add(m, Number(resp.headSeq));
      r.olderToken = resp.nextPageToken;
      r.atBeginning = !resp.nextPageToken;
      r.historyLoaded = true;
      if (r.name === this.current) this.markRead(r);
    } catch (err) {
      console.warn("parley: history of", r.name, messageOf(err));
    } finally {
      r.historyLoading = false;
      this.changed();
    }
  }

  /** loadOlder loads the page of history before the oldest message shown. */
  async loadOlder(name: string): Promise<void> {
    const r = this.room(name);
    if (r.loadingOlder || r.atBeginning || !r.olderToken) return;
    r.loadingOlder = true;
    this.changed();
    try {
      const resp = await this.api.listMessages({ room: r.name, limit: pageSize, pageToken: r.olderToken });
      for (const m of resp.messages) r.add(m, Number(resp.headSeq));
      r.olderToken = resp.nextPageToken;
      r.atBeginning = !resp.nextPageToken;
    } catch (err) {
      console.warn("parley: older history of", r.name, messageOf(err));
    } finally {
      r.loadingOlder = false;
      this.changed();
    }
  }

  /** refreshRooms reloads the room list: names, online counts, last seqs. */
  async refreshRooms(): Promise<void> {
    const seen = new Set<string>();
    try {
      let pageToken = "";
      for (let page = 0; page < 20; page++) {
        const resp = await this.api.listRooms({ pageSize: 200, pageToken });
        for (const info of resp.rooms) {
          seen.add(info.name);
          const r = this.room(info.name);
          r.listed(info);
          if (r.name === this.current && r.dividerSeq < 0) {
            r.dividerSeq = r.readSeq;
            r.unreadAtOpen = r.unread();
          }
        }
        pageToken = resp.nextPageToken;
        if (!pageToken) break;
      }
    } catch (err) {
      if (codeOf(err) === Code.Unauthenticated) this.signedOut(messageOf(err));
      return;
    }
    for (const r of this.rooms.values()) {
      if (seen.has(r.name)) {
        // Refused before (removed from a private room), listed again now (added back).
        if (r.status === "error" && !r.wanted && r.name !== this.current) r.status = "idle";
        continue;
      }
      r.info = undefined;
      if (r.quiet) {
        this.session.notify({ case: "leave", value: { room: r.name } });
        r.reset();
      }
    }
    const cur = this.rooms.get(this.current);
    if (cur?.info?.visibility === RoomVisibility.PRIVATE && !cur.members) void this.loadMembers(cur);
    if (!this.roomsLoaded) {
      this.roomsLoaded = true;
      if (!this.current) this.openDefault();
    }
    this.followAll();
    this.changed();
  }

  // relistSoon lists the rooms again after a room_visible event (see
  // relistMinMs).
  private relistSoon(): void {
    if (this.relistTimer) return;
    const wait = Math.max(relistMinMs + Math.random() * relistSpreadMs, this.relistedAt + relistEveryMs - Date.now());
    this.relistTimer = window.setTimeout(() => {
      this.relistTimer = 0;
      this.relistedAt = Date.now();
      void this.refreshRooms();
    }, wait);
  }

  /**
   * followAll follows the listed rooms that are not on the stream, up to
   * maxOnStream: joined quietly (out of their presence), from where their
   * counts are, so that each message counts in the badge as it comes, once.
   * Direct and private rooms go first, then the most recently active.
   */
  private followAll(): void {
    if (!this.session.online || this.streamFull) return;
    let on = 0;
    const idle: RoomState[] = [];
    for (const r of this.rooms.values()) {
      if (r.status === "joining" || r.status === "joined") on++;
      else if (r.status === "idle" && r.info && !r.wanted && r.name !== this.current) idle.push(r);
    }
    const rank = (r: RoomState) => (isDirect(r.name) || r.info?.visibility === RoomVisibility.PRIVATE ? 0 : 1);
    const at = (r: RoomState) => Number(r.info?.lastMessageAt?.seconds ?? 0n);
    idle.sort((a, b) => rank(a) - rank(b) || at(b) - at(a) || a.name.localeCompare(b.name));
    for (const r of idle.slice(0, Math.max(0, maxOnStream - on))) void this.follow(r);
  }

  // follow joins a room quietly for its badge.
  private async follow(r: RoomState): Promise<void> {
    r.quiet = true;
    r.status = "joining";
    r.error = "";
    const reply = await this.session.request({ case: "join", value: { room: r.name, afterSeq: BigInt(r.headSeq()), quiet: true } });
    // Opened meanwhile, or the stream dropped (onOpen follows it again).
    if (!r.quiet || reply.code === StreamLost) return;
    if (reply.code === 0) {
      if (r.status === "joining") r.status = "joined";
    } else {
      // Gone from the list (the next list drops it), or the stream is full.
      r.quiet = false;
      r.status = "idle";
      if (reply.code === Code.ResourceExhausted) this.streamFull = true;
    }
    this.changed();
  }

  private openDefault(): void {
    const listed = [...this.rooms.values()].filter((r) => r.info && !isDirect(r.name));
    const pick = this.rooms.get("lobby")?.info ? "lobby" : listed.map((r) => r.name).sort()[0];
    if (pick) this.open(pick);
  }

  private onVisible = (): void => {
    const r = this.rooms.get(this.current);
    if (document.visibilityState === "visible" && r) this.markRead(r);
  };

  /**
   * seen tells that the open room's messages up to seq are in view (the
   * message list watches them scroll in); they are read while the page is
   * visible.
   */
  seen(room: string, seq: number): void {
    if (room !== this.current || seq <= this.visibleSeq) return;
    this.visibleSeq = seq;
    const r = this.rooms.get(room);
    if (r && document.visibilityState === "visible") this.mark(r, seq);
  }

  /**
   * atBottom tells whether the open room's list is scrolled to its end;
   * focused and there, the user has read everything, edits and reactions
   * included.
   */
  setAtBottom(at: boolean): void {
    this.atBottom = at;
    const r = this.rooms.get(this.current);
    if (at && r) this.markRead(r);
  }

  // markRead marks the open room read as far as the user can see it: the
  // newest message in view, or the head when focused at the bottom.
  private markRead(r: RoomState): void {
    if (document.visibilityState !== "visible") return;
    if (this.visibleSeq) this.mark(r, this.visibleSeq);
    if (this.atBottom && document.hasFocus() && r.historyLoaded) this.mark(r, r.headSeq());
  }

  // mark moves the marker here at once (badges follow) and sends it: the
  // first of a burst at once, then the newest at most every markEveryMs.
  private mark(r: RoomState, seq: number): void {
    if (r.status === "new-dm" || !r.readTo(seq)) return;
    this.changed();
    if (this.markTimers.has(r.name)) this.markLater.add(r.name);
    else this.markNow(r);
  }

  private markNow(r: RoomState): void {
    void this.sendMark(r);
    const t = window.setTimeout(() => {
      this.markTimers.delete(r.name);
      if (this.markLater.delete(r.name)) this.markNow(r);
    }, markEveryMs);
    this.markTimers.set(r.name, t);
  }

  private async sendMark(r: RoomState): Promise<void> {
    if (!this.session.online) {
      this.unsentMarks.add(r.name); // sent on the next connect
      return;
    }
    const reply = await this.session.request({ case: "markRead", value: { room: r.name, seq: BigInt(r.readSeq) } });
    if (reply.code === StreamLost) this.unsentMarks.add(r.name);
    else if (reply.code === 0 && reply.readMarker) {
      r.marked(reply.readMarker);
      this.changed();
    }
  }

  private isMyDm(name: string): boolean {
    const users = dmUsers(name);
    return !!users && users.includes(this.me);
  }

  private dmOther(name: string): string {
    const users = dmUsers(name) ?? ["", ""];
    return users[0] === this.me ? users[1] : users[0];
  }

  private key(what: string): string {
    return `parley.${what}.${this.me}`;
  }

  // save keeps this tab's rooms in sessionStorage, so a reload rejoins them.
  private save(): void {
    const wanted = [...this.rooms.values()].filter((r) => r.wanted).map((r) => r.name);
    sessionStorage.setItem(this.key("rooms"), JSON.stringify({ wanted, current: this.current }));
  }

  private restore(): void {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.key("rooms")) ?? "null");
      if (!saved) return;
      for (const name of saved.wanted ?? []) {
        const r = this.room(name);
        r.wanted = true;
        r.status = "joining";
      }
      if (saved.current) this.open(saved.current);
    } catch {
      // a damaged entry: start afresh
    }
  }
}

/** refusal turns a refused request into a sentence. */
function refusal(code: number, message: string): string {
  switch (code) {
    case Code.PermissionDenied:
      return `You don't have access to this room (${message})`;
    case Code.NotFound:
      return `This room does not exist (${message})`;
    default:
      return message || Code[code] || `error ${code}`;
  }
}

// retryDelayMs is how long a reply refused for the send rate asks the
// client to wait: its retry_after, or rateRetryMs without one.
function retryDelayMs(reply: Reply): number {
  const d = reply.retryAfter;
  if (!d) return rateRetryMs;
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  return Number.isFinite(ms) && ms > 0 ? Math.ceil(ms) : rateRetryMs;
}

function transient(code: Code): boolean {
  return code === Code.Unavailable || code === Code.Unknown || code === Code.DeadlineExceeded || code === Code.Canceled;
}
