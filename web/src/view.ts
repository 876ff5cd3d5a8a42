// ChatView draws a Chat: the static frame is built once (so the composer keeps
// its text and focus), the parts are redrawn on every change, batched per
// animation frame.
import type { Chat } from "./chat";
import { avatar, clock, dayLabel, fullTime, h } from "./dom";
import { RoomVisibility } from "./gen/parley/v1/types_pb";
import { isDirect, roomHref, roomTitle, type Msg, type PendingSend, type RoomState } from "./room";

const groupGapMs = 5 * 60 * 1000;
const roomNamePattern = "[a-z0-9_\\-]{1,64}";

/** Drawer is the panel shown over the room on a narrow screen, if any. */
type Drawer = "" | "rooms" | "people";

/** ChatView is the signed-in page. */
export class ChatView {
  readonly root: HTMLElement;
  private chat!: Chat;
  private scheduled = false;
  private msgKey = "";
  private shownRoom = "";
  private firstSeq = 0;
  private drawer: Drawer = "";
  private el = {
    conn: h("span", { class: "conn", "data-testid": "conn-state", role: "status" }),
    rooms: h("ul", { class: "room-list", "data-testid": "room-list" }),
    dms: h("ul", { class: "room-list", "data-testid": "dm-list" }),
    title: h("h2", { class: "room-title", "data-testid": "room-title" }),
    meta: h("span", { class: "room-meta", "data-testid": "room-meta" }),
    leave: h("button", { class: "ghost", type: "button", "data-testid": "leave-room" }, "Leave"),
    error: h("div", { class: "room-error", "data-testid": "room-error", role: "alert", hidden: true }),
    messages: h("div", { class: "messages", "data-testid": "messages", role: "log", "aria-label": "Messages", tabindex: "0" }),
    typing: h("div", { class: "typing", "data-testid": "typing", "aria-live": "polite" }),
    input: h("textarea", { rows: "1", "data-testid": "composer-input", "aria-label": "Message", placeholder: "Write a message" }),
    send: h("button", { type: "submit", class: "primary", "data-testid": "composer-send" }, "Send"),
    peopleTitle: h("h2", null, "Online"),
    roomsToggle: h("button", { class: "icon narrow-only", type: "button", "aria-label": "Show rooms", "aria-expanded": "false", "data-testid": "toggle-rooms" }, "\u2630"),
    peopleToggle: h("button", { class: "ghost people-toggle", type: "button", "aria-expanded": "false", "data-testid": "toggle-people" }, "People"),
    people: h("ul", { class: "people-list", "data-testid": "presence-list" }),
    members: h("section", { class: "members", "data-testid": "members", hidden: true }),
    createForm: h("form", { class: "inline-form", "data-testid": "create-room-form", hidden: true }),
    createError: h("p", { class: "form-error", "data-testid": "create-room-error", role: "alert" }),
    dmError: h("p", { class: "form-error", "data-testid": "dm-error", role: "alert" }),
  };

  constructor(
    private readonly me: string,
    private readonly signOut: () => void,
  ) {
    this.root = this.frame();
  }

  /** attach starts drawing chat. */
  attach(chat: Chat): void {
    this.chat = chat;
    this.update();
  }

  /** update schedules a redraw. */
  update(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  /** flush draws now what update scheduled for the next frame. */
  flush(): void {
    this.render();
  }

  private frame(): HTMLElement {
    const app = h("div", { class: "app" });
    const top = h(
      "header",
      { class: "topbar" },
      this.el.roomsToggle,
      h("h1", { class: "brand" }, "Parley"),
      this.el.conn,
      h("span", { class: "spacer" }),
      h("span", { class: "me", "data-testid": "me", title: "Signed in as " + this.me }, avatar(this.me, true), h("span", null, this.me)),
      h("button", { class: "ghost", type: "button", "data-testid": "signout", onclick: () => this.signOut() }, "Sign out"),
    );
    const side = h(
      "nav",
      { class: "sidebar", "aria-label": "Rooms and conversations" },
      h(
        "div",
        { class: "section-head" },
        h("h2", null, "Rooms"),
        h("button", { class: "icon", type: "button", "aria-label": "Create a room", title: "Create a room", "data-testid": "create-room-toggle", onclick: () => this.toggleCreate() }, "+"),
      ),
      this.createRoomForm(),
      this.el.rooms,
      h("div", { class: "section-head" }, h("h2", null, "Direct messages")),
      this.newDmForm(),
      this.el.dms,
    );
    side.addEventListener("click", (ev) => {
      if ((ev.target as HTMLElement).closest("a")) this.setDrawer("");
    });
    this.el.leave.addEventListener("click", () => this.chat.leave(this.chat.current));
    this.el.messages.addEventListener("scroll", () => this.maybeLoadOlder());
    const main = h(
      "main",
      { class: "room" },
      h(
        "div",
        { class: "room-head" },
        h("div", { class: "room-heading" }, this.el.title, this.el.meta),
        this.el.peopleToggle,
        this.el.leave,
      ),
      this.el.error,
      this.el.messages,
      this.el.typing,
      this.composer(),
    );
    const closePeople = h("button", { class: "icon drawer-close", type: "button", "aria-label": "Close the people panel", title: "Close", "data-testid": "close-people", onclick: () => this.setDrawer("", true) }, "\u00d7");
    const people = h("aside", { class: "people", "aria-label": "People in this room" }, h("div", { class: "people-head" }, this.el.peopleTitle, closePeople), this.el.people, this.el.members);
    people.addEventListener("click", (ev) => {
      if ((ev.target as HTMLElement).closest('[data-testid="dm-start"]')) this.setDrawer("");
    });
    app.append(top, side, main, people, h("div", { class: "scrim", "aria-hidden": "true" }));
    this.drawers(app, side, people);
    return app;
  }

  // drawers makes the rooms sidebar and the people panel, where the screen
  // is narrow enough for them to be drawers, behave as a person expects:
  // each button opens its drawer and closes it again, opening one closes the
  // other, and Escape or a tap anywhere outside the open one closes it.
  private drawers(app: HTMLElement, side: HTMLElement, people: HTMLElement): void {
    const { roomsToggle, peopleToggle } = this.el;
    roomsToggle.addEventListener("click", () => this.setDrawer(this.drawer === "rooms" ? "" : "rooms"));
    peopleToggle.addEventListener("click", () => this.setDrawer(this.drawer === "people" ? "" : "people"));
    // A click's path is taken when it happens, so a button that the click
    // redraws away still counts as inside.
    app.addEventListener("click", (ev) => {
      if (!this.drawer) return;
      const path = ev.composedPath();
      const open = this.drawer === "rooms" ? side : people;
      if (!path.includes(open) && !path.includes(roomsToggle) && !path.includes(peopleToggle)) this.setDrawer("");
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.drawer && this.root.isConnected) this.setDrawer("", true);
    });
  }

  // setDrawer shows one drawer, or none; refocus moves the focus back to
  // the button of the drawer being closed.
  private setDrawer(d: Drawer, refocus = false): void {
    const { roomsToggle, peopleToggle } = this.el;
    const closing = this.drawer === "rooms" ? roomsToggle : peopleToggle;
    this.drawer = d;
    this.root.classList.toggle("show-rooms", d === "rooms");
    this.root.classList.toggle("show-people", d === "people");
    roomsToggle.setAttribute("aria-expanded", String(d === "rooms"));
    roomsToggle.setAttribute("aria-label", d === "rooms" ? "Hide rooms" : "Show rooms");
    peopleToggle.setAttribute("aria-expanded", String(d === "people"));
    if (refocus && !d) closing.focus();
  }

  private createRoomForm(): HTMLElement {
    const name = h("input", { name: "room", required: true, pattern: roomNamePattern, maxlength: "64", autocomplete: "off", placeholder: "room-name", "aria-label": "New room name", "data-testid": "create-room-name", title: "1-64 characters: a-z, 0-9, - and _" });
    const priv = h("input", { type: "checkbox", "data-testid": "create-room-private" });
    const f = this.el.createForm;
    f.append(
      name,
      h("label", { class: "check" }, priv, " Private (members only)"),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary", "data-testid": "create-room-submit" }, "Create"), h("button", { type: "button", class: "ghost", onclick: () => this.toggleCreate(false) }, "Cancel")),
      this.el.createError,
    );
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      this.el.createError.textContent = "";
      const err = await this.chat.createRoom(name.value.trim(), priv.checked);
      if (err) {
        this.el.createError.textContent = err;
        return;
      }
      name.value = "";
      priv.checked = false;
      this.toggleCreate(false);
      this.setDrawer("");
    });
    return f;
  }

  private toggleCreate(show = this.el.createForm.hidden): void {
    this.el.createForm.hidden = !show;
    this.el.createError.textContent = "";
    if (show) this.el.createForm.querySelector("input")?.focus();
  }

  private newDmForm(): HTMLElement {
    const user = h("input", { name: "user", autocomplete: "off", placeholder: "User name", "aria-label": "Start a conversation with", "data-testid": "dm-user-input" });
    const f = h("form", { class: "inline-form dm-form" }, h("div", { class: "row" }, user, h("button", { type: "submit", class: "ghost", "data-testid": "dm-user-submit" }, "Message")), this.el.dmError);
    f.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const err = this.chat.startDirect(user.value);
      this.el.dmError.textContent = err;
      if (err) return;
      user.value = "";
      this.setDrawer("");
    });
    return f;
  }

  private composer(): HTMLElement {
    const { input, send } = this.el;
    const f = h("form", { class: "composer", "aria-label": "Send a message" }, input, send);
    const submit = () => {
      const body = input.value;
      if (!body.trim()) return;
      this.chat.send(body);
      input.value = "";
      this.fitInput();
      this.stickToBottom = true;
    };
    f.addEventListener("submit", (ev) => {
      ev.preventDefault();
      submit();
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submit();
      }
    });
    input.addEventListener("input", () => {
      this.fitInput();
      if (input.value) this.chat.typed();
    });
    return f;
  }

  private fitInput(): void {
    const { input } = this.el;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  private stickToBottom = false;
  private countdown = 0;

  private render(): void {
    const chat = this.chat;
    const r = chat.rooms.get(chat.current);
    this.renderConn();
    this.renderRoomLists();
    this.renderHeader(r);
    this.renderMessages(r);
    this.renderTyping(r);
    this.renderPeople(r);
    const unread = [...chat.rooms.values()].reduce((n, x) => n + (x.wanted && x.name !== chat.current ? x.unread() : 0), 0);
    document.title = unread ? `(${unread}) Parley` : "Parley";
  }

  private renderConn(): void {
    const { conn, retryAt } = this.chat;
    const el = this.el.conn;
    el.dataset.state = conn;
    const text: Record<typeof conn, string> = {
      connecting: "Connecting\u2026",
      online: "Connected",
      waiting: `Reconnecting in ${Math.max(1, Math.ceil((retryAt - Date.now()) / 1000))}s`,
      offline: "Offline: waiting for the network",
      closed: "Disconnected",
    };
    el.replaceChildren(h("span", { class: "dot", "aria-hidden": "true" }), text[conn]);
    window.clearTimeout(this.countdown);
    if (conn === "waiting" || conn === "offline") {
      el.append(h("button", { type: "button", class: "link", "data-testid": "conn-retry", onclick: () => this.chat.reconnectNow() }, "Retry now"));
      if (conn === "waiting") this.countdown = window.setTimeout(() => this.update(), 1000);
    }
  }

  private renderRoomLists(): void {
    const shown = [...this.chat.rooms.values()].filter((r) => r.info || (r.wanted && r.status !== "error" && r.status !== "idle"));
    const rooms = shown.filter((r) => !isDirect(r.name)).sort((a, b) => a.name.localeCompare(b.name));
    const dms = shown.filter((r) => isDirect(r.name)).sort((a, b) => lastAt(b) - lastAt(a) || a.name.localeCompare(b.name));
    this.el.rooms.replaceChildren(...rooms.map((r) => this.roomItem(r)));
    if (!rooms.length) this.el.rooms.append(h("li", { class: "empty" }, this.chat.roomsLoaded ? "No rooms yet" : "Loading\u2026"));
    this.el.dms.replaceChildren(...dms.map((r) => this.roomItem(r)));
    if (!dms.length) this.el.dms.append(h("li", { class: "empty" }, "None yet"));
  }

  private roomItem(r: RoomState): HTMLElement {
    const current = r.name === this.chat.current;
    const unread = current ? 0 : r.unread();
    const dm = isDirect(r.name);
    const title = roomTitle(r.name, this.me);
    // A direct room shows whether the other person is there, not a count
    // that would include oneself.
    const online = dm ? 0 : r.onlineCount();
    const otherHere = dm && (r.status === "joined" ? r.presence.has(title) : (r.info?.onlineCount ?? 0) > 0);
    return h(
      "li",
      null,
      h(
        "a",
        {
          href: roomHref(r.name),
          class: ["room-item", r.wanted ? "joined" : "", unread ? "has-unread" : ""].join(" "),
          "aria-current": current ? "page" : null,
          "data-testid": "room-item",
          "data-room": r.name,
          "aria-label": `${dm ? "Conversation with " : "Room "}${title}${online ? `, ${online} online` : ""}${otherHere ? ", online" : ""}${unread ? `, ${unread} unread` : ""}`,
        },
        dm ? avatar(title, true) : h("span", { class: "hash", "aria-hidden": "true" }, "#"),
        h("span", { class: "name" }, title),
        r.info?.visibility === RoomVisibility.PRIVATE ? h("span", { class: "tag" }, "private") : null,
        online ? h("span", { class: "online", "data-testid": "room-online", title: `${online} online` }, String(online)) : null,
        otherHere ? h("span", { class: "online", "data-testid": "dm-online", title: `${title} is here` }) : null,
        unread ? h("span", { class: "unread", "data-testid": "room-unread", title: `${unread} unread` }, unread > 99 ? "99+" : String(unread)) : null,
      ),
    );
  }

  private renderHeader(r: RoomState | undefined): void {
    const { title, meta, leave, error, input, send } = this.el;
    if (!r) {
      title.textContent = "No room open";
      meta.textContent = "Pick a room on the left, or create one";
      leave.hidden = true;
      error.hidden = true;
      input.disabled = send.disabled = true;
      return;
    }
    const dm = isDirect(r.name);
    title.textContent = roomTitle(r.name, this.me);
    title.dataset.room = r.name;
    const kind = dm ? "Direct conversation" : r.info?.visibility === RoomVisibility.PRIVATE ? "Private room" : "Public room";
    const status = r.status === "joining" ? "joining\u2026" : r.status === "new-dm" ? "no messages yet" : "";
    meta.textContent = [kind, status].filter(Boolean).join(" \u00b7 ");
    leave.hidden = !r.wanted || r.status === "new-dm";
    leave.textContent = dm ? "Close" : "Leave";
    leave.setAttribute("aria-label", `${dm ? "Close the conversation with" : "Leave"} ${title.textContent}`);
    error.hidden = r.status !== "error";
    error.textContent = r.error;
    const usable = r.status !== "error";
    input.disabled = send.disabled = !usable;
    input.placeholder = r.status === "new-dm" ? `Write the first message to ${title.textContent}` : usable ? `Message ${dm ? title.textContent : "#" + r.name}` : "You cannot write here";
  }

  private renderMessages(r: RoomState | undefined): void {
    const box = this.el.messages;
    const msgs = r?.messages() ?? [];
    const key = r ? [r.name, r.status, msgs.length, msgs[0]?.seq, r.lastSeq, r.changes, r.atBeginning, r.loadingOlder, r.historyLoaded, r.pending.map((p) => p.clientMsgId + p.state).join()].join("|") : "";
    if (key === this.msgKey) return;
    this.msgKey = key;
    const switched = (r?.name ?? "") !== this.shownRoom;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    const fromBottom = box.scrollHeight - box.scrollTop;
    const prepended = !switched && msgs.length > 0 && msgs[0].seq < this.firstSeq;
    box.replaceChildren(...(r ? this.messageNodes(r, msgs) : []));
    if (switched || atBottom || this.stickToBottom) box.scrollTop = box.scrollHeight;
    else if (prepended) box.scrollTop = box.scrollHeight - fromBottom;
    this.stickToBottom = false;
    this.shownRoom = r?.name ?? "";
    this.firstSeq = msgs[0]?.seq ?? 0;
    if (r) requestAnimationFrame(() => this.maybeLoadOlder());
  }

  private messageNodes(r: RoomState, msgs: Msg[]): Node[] {
    const out: Node[] = [];
    if (r.status === "error") return out;
    if (r.status === "new-dm") {
      out.push(h("p", { class: "intro" }, `This is the start of your private conversation with ${roomTitle(r.name, this.me)}. Only the two of you can read it.`));
    } else if (r.atBeginning) {
      out.push(h("p", { class: "intro", "data-testid": "history-start" }, isDirect(r.name) ? `This is the start of your conversation with ${roomTitle(r.name, this.me)}.` : `This is the beginning of #${r.name}.`));
    } else if (r.olderToken) {
      out.push(h("button", { type: "button", class: "link load-older", "data-testid": "load-older", disabled: r.loadingOlder, onclick: () => void this.chat.loadOlder(r.name) }, r.loadingOlder ? "Loading older messages\u2026" : "Load older messages"));
    } else if (!r.historyLoaded) {
      out.push(h("p", { class: "intro" }, "Loading messages\u2026"));
    }
    let group: HTMLElement | null = null;
    let prev: Msg | null = null;
    for (const m of msgs) {
      if (!prev || dayLabel(prev.sentAt) !== dayLabel(m.sentAt)) {
        out.push(h("div", { class: "day", role: "separator" }, h("span", null, dayLabel(m.sentAt))));
        group = null;
      }
      if (!group || prev!.sender !== m.sender || m.sentAt.getTime() - prev!.sentAt.getTime() > groupGapMs) {
        group = this.group(m.sender, m.sentAt);
        out.push(group);
      }
      group.append(h("div", { class: "msg", "data-testid": "message", "data-seq": String(m.seq), "data-sender": m.sender }, h("time", { class: "t", datetime: m.sentAt.toISOString(), title: fullTime(m.sentAt) }, clock(m.sentAt)), h("div", { class: "body", "data-testid": "message-body" }, m.body)));
      prev = m;
    }
    if (msgs.length === 0 && r.historyLoaded && r.pending.length === 0) out.push(h("p", { class: "intro muted" }, "No messages yet. Say hello!"));
    if (r.pending.length) {
      const g = prev?.sender === this.me ? group! : this.group(this.me, new Date());
      if (g !== group) out.push(g);
      for (const p of r.pending) g.append(this.pendingNode(r, p));
    }
    return out;
  }

  private group(sender: string, at: Date): HTMLElement {
    return h(
      "div",
      { class: sender === this.me ? "group mine" : "group", "data-testid": "message-group", "data-sender": sender },
      avatar(sender),
      h("div", { class: "group-head" }, h("span", { class: "sender", "data-testid": "message-sender" }, sender), h("time", { datetime: at.toISOString(), title: fullTime(at) }, clock(at))),
    );
  }

  private pendingNode(r: RoomState, p: PendingSend): HTMLElement {
    const status =
      p.state === "sending"
        ? h("span", { class: "status" }, this.chat.conn === "online" ? "Sending\u2026" : "Waiting for the connection\u2026")
        : h(
            "span",
            { class: "status failed", role: "alert" },
            `Not sent: ${p.error ?? "error"}. `,
            h("button", { type: "button", class: "link", "data-testid": "retry-send", onclick: () => this.chat.retry(r.name, p.clientMsgId) }, "Retry"),
            " \u00b7 ",
            h("button", { type: "button", class: "link", onclick: () => this.chat.discard(r.name, p.clientMsgId) }, "Discard"),
          );
    return h("div", { class: `msg pending ${p.state}`, "data-testid": "pending-message", "data-state": p.state }, h("span", { class: "t" }), h("div", { class: "body" }, p.body, status));
  }

  private maybeLoadOlder(): void {
    const box = this.el.messages;
    const r = this.chat.rooms.get(this.chat.current);
    if (!r || !r.olderToken || r.loadingOlder || r.atBeginning) return;
    // A scroll event can come between a state change and its redraw (scroll
    // events run before animation frames): judge only a page that is drawn.
    if (this.shownRoom !== r.name || this.firstSeq !== (r.messages()[0]?.seq ?? 0)) return;
    if (box.scrollTop < 120) void this.chat.loadOlder(r.name);
  }

  private renderTyping(r: RoomState | undefined): void {
    const users = r ? [...r.typing.keys()].sort() : [];
    const text =
      users.length === 0 ? "" : users.length === 1 ? `${users[0]} is typing\u2026` : users.length <= 3 ? `${users.slice(0, -1).join(", ")} and ${users.at(-1)} are typing\u2026` : "Several people are typing\u2026";
    if (this.el.typing.textContent !== text) this.el.typing.textContent = text;
  }

  private renderPeople(r: RoomState | undefined): void {
    const users = r && r.status === "joined" ? [...r.presence.entries()].sort(([a], [b]) => (a === this.me ? -1 : b === this.me ? 1 : a.localeCompare(b))) : [];
    // While the stream is down, the last known presence is shown dimmed.
    const stale = this.chat.conn !== "online";
    this.el.people.classList.toggle("stale", stale);
    this.el.peopleTitle.textContent = r && r.status === "joined" ? (stale ? "Online (reconnecting\u2026)" : `Online \u2014 ${users.length}`) : "Online";
    this.el.people.replaceChildren(
      ...users.map(([user, metas]) => {
        const clients = [...metas.values()].map((m) => m.client || "unnamed client");
        const n = metas.size;
        return h(
          "li",
          { "data-testid": "presence-user", "data-user": user },
          avatar(user, true),
          h("span", { class: "who" }, h("span", { class: "name" }, user, user === this.me ? h("span", { class: "muted" }, " (you)") : null), h("span", { class: "devices", "data-testid": "presence-devices", "data-count": String(n), title: clients.join(", ") }, n === 1 ? "1 device" : `${n} devices`)),
          user !== this.me ? h("button", { type: "button", class: "ghost small", "data-testid": "dm-start", "aria-label": `Message ${user}`, title: `Message ${user} privately`, onclick: () => this.chat.startDirect(user) }, "Message") : null,
        );
      }),
    );
    if (r && r.status !== "joined") this.el.people.append(h("li", { class: "empty" }, r.status === "new-dm" ? "Nobody here yet" : "Not joined"));
    this.renderMembers(r);
  }

  private renderMembers(r: RoomState | undefined): void {
    const box = this.el.members;
    const priv = r?.info?.visibility === RoomVisibility.PRIVATE;
    box.hidden = !priv;
    if (!r || !priv) return;
    const owner = r.info?.createdBy === this.me;
    const removeErr = h("p", { class: "form-error", role: "alert" });
    const remove = (m: string) => async () => {
      removeErr.textContent = await this.chat.removeMember(r.name, m);
    };
    const list = h(
      "ul",
      { class: "member-list", "data-testid": "member-list" },
      ...(r.members ?? []).map((m) =>
        h(
          "li",
          { "data-testid": "member", "data-user": m },
          avatar(m, true),
          h("span", { class: "who" }, m, m === r.info?.createdBy ? h("span", { class: "muted" }, " (owner)") : null),
          owner && m !== this.me ? h("button", { type: "button", class: "ghost small", "aria-label": `Remove ${m}`, "data-testid": "remove-member", onclick: remove(m) }, "Remove") : null,
        ),
      ),
    );
    const nodes: Node[] = [h("h2", null, "Members"), list, removeErr];
    if (owner) {
      const user = h("input", { autocomplete: "off", placeholder: "User name", "aria-label": "Add a member", "data-testid": "add-member-input" });
      const err = h("p", { class: "form-error", role: "alert" });
      const f = h("form", { class: "inline-form" }, h("div", { class: "row" }, user, h("button", { type: "submit", class: "ghost", "data-testid": "add-member-submit" }, "Add")), err);
      f.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        err.textContent = await this.chat.addMember(r.name, user.value);
        if (!err.textContent) user.value = "";
      });
      nodes.push(f);
    }
    // Redraw only when the list changes, or the add form would lose its input.
    const sig = r.name + "|" + (r.members ?? []).join(",");
    if (box.dataset.sig === sig) return;
    box.dataset.sig = sig;
    box.replaceChildren(...nodes);
  }
}


function lastAt(r: RoomState): number {
  const t = r.info?.lastMessageAt;
  return t ? Number(t.seconds) * 1000 : 0;
}
