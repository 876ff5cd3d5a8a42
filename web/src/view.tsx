// ChatView draws a Chat with Preact: the page redraws when the chat says it
// changed, at most once an animation frame (Ticker); the message list
// redraws only when its messages or paging change, and a message alone when
// its own signal does (messages.tsx). Inputs are left uncontrolled, so a
// redraw keeps their text and focus.
import { signal } from "@preact/signals";
import { Component, createRef, type VNode } from "preact";
import { Avatar } from "./avatar";
import type { Chat } from "./chat";
import { RoomVisibility } from "./gen/parley/v1/types_pb";
import { MessageList, quoteText, type Scroll } from "./messages";
import { isDirect, roomHref, roomTitle, type RoomState } from "./room";

const roomNamePattern = "[a-z0-9_\\-]{1,64}";

/** Ticker tells the view that the chat changed, at most once a frame. */
export class Ticker {
  /** Bumped on every change; the page reads it, so it redraws. */
  readonly version = signal(0);
  private frame = 0;

  /** update schedules a redraw. */
  update(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => this.flush());
  }

  /** flush draws now what update scheduled for the next frame. */
  flush(): void {
    if (!this.frame) return;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.version.value++;
  }
}

/** Drawer is the panel shown over the room on a narrow screen, if any. */
type Drawer = "" | "rooms" | "people";

interface Props {
  me: string;
  chat: Chat;
  ticker: Ticker;
  signOut: () => void;
}

/** ChatView is the signed-in page. */
export class ChatView extends Component<Props> implements Scroll {
  stickToBottom = false;
  // View state lives in fields, changed with forceUpdate: a click handler
  // later in the same event must see the new value at once.
  private drawer: Drawer = "";
  private creating = false;
  private createError = "";
  private dmError = "";
  // The message the composer replies to, in the room it belongs to.
  private replying?: { room: string; seq: number };
  private countdown = 0;
  private side = createRef<HTMLElement>();
  private people = createRef<HTMLElement>();
  private roomsToggle = createRef<HTMLButtonElement>();
  private peopleToggle = createRef<HTMLButtonElement>();
  private createName = createRef<HTMLInputElement>();
  private createPrivate = createRef<HTMLInputElement>();
  private dmUser = createRef<HTMLInputElement>();
  private input = createRef<HTMLTextAreaElement>();

  componentDidMount(): void {
    document.addEventListener("keydown", this.onKey);
    this.drawn();
  }

  componentDidUpdate(): void {
    this.drawn();
  }

  componentWillUnmount(): void {
    document.removeEventListener("keydown", this.onKey);
    window.clearTimeout(this.countdown);
  }

  // drawn runs after every redraw: the tab's title counts unread messages,
  // and "Reconnecting in Ns" counts down.
  private drawn(): void {
    const { chat } = this.props;
    const unread = [...chat.rooms.values()].reduce((n, x) => n + (x.name !== chat.current ? x.unread() : 0), 0);
    document.title = unread ? `(${unread}) Parley` : "Parley";
    window.clearTimeout(this.countdown);
    if (chat.conn === "waiting") this.countdown = window.setTimeout(() => this.props.ticker.update(), 1000);
  }

  private onKey = (ev: KeyboardEvent): void => {
    if (ev.key === "Escape" && this.drawer) this.setDrawer("", true);
  };

  // The rooms sidebar and the people panel, where the screen is narrow
  // enough for them to be drawers, behave as a person expects: each button
  // opens its drawer and closes it again, opening one closes the other, and
  // Escape or a tap anywhere outside the open one closes it. A click's path
  // is taken when it happens, so a button that the click redraws away still
  // counts as inside.
  private onAppClick = (ev: MouseEvent): void => {
    if (!this.drawer) return;
    const path = ev.composedPath();
    const open = this.drawer === "rooms" ? this.side.current : this.people.current;
    if (!path.includes(open!) && !path.includes(this.roomsToggle.current!) && !path.includes(this.peopleToggle.current!)) this.setDrawer("");
  };

  // setDrawer shows one drawer, or none; refocus moves the focus back to
  // the button of the drawer being closed.
  private setDrawer(d: Drawer, refocus = false): void {
    const closing = this.drawer === "rooms" ? this.roomsToggle.current : this.peopleToggle.current;
    this.drawer = d;
    this.forceUpdate();
    if (refocus && !d) closing?.focus();
  }

  private toggleCreate(show = !this.creating): void {
    this.creating = show;
    this.createError = "";
    this.forceUpdate(() => {
      if (show) this.createName.current?.focus();
    });
  }

  private onCreate = async (ev: Event): Promise<void> => {
    ev.preventDefault();
    const name = this.createName.current!;
    const priv = this.createPrivate.current!;
    this.createError = "";
    this.forceUpdate();
    const err = await this.props.chat.createRoom(name.value.trim(), priv.checked);
    if (err) {
      this.createError = err;
      this.forceUpdate();
      return;
    }
    name.value = "";
    priv.checked = false;
    this.toggleCreate(false);
    this.setDrawer("");
  };

  private onDm = (ev: Event): void => {
    ev.preventDefault();
    const user = this.dmUser.current!;
    this.dmError = this.props.chat.startDirect(user.value);
    this.forceUpdate();
    if (this.dmError) return;
    user.value = "";
    this.setDrawer("");
  };

  /** reply makes the next message sent in the open room a reply to seq. */
  reply(seq: number): void {
    this.replying = { room: this.props.chat.current, seq };
    this.forceUpdate(() => this.input.current?.focus());
  }

  private cancelReply = (): void => {
    this.replying = undefined;
    this.forceUpdate();
  };

  private submit = (): void => {
    const input = this.input.current!;
    const body = input.value;
    if (!body.trim()) return;
    const { chat } = this.props;
    const to = this.replying?.room === chat.current ? this.replying.seq : 0;
    chat.send(body, to);
    if (this.replying) this.cancelReply();
    input.value = "";
    this.fitInput();
    this.stickToBottom = true;
  };

  private onComposerKey = (ev: KeyboardEvent): void => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      this.submit();
    } else if (ev.key === "Escape" && this.replying) {
      ev.stopPropagation();
      this.cancelReply();
    }
  };

  private onComposerInput = (): void => {
    this.fitInput();
    if (this.input.current!.value) this.props.chat.typed();
  };

  private fitInput(): void {
    const input = this.input.current!;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  render(): VNode {
    this.props.ticker.version.value; // read, so that every change of the chat redraws the page
    const { chat, me, signOut } = this.props;
    const r = chat.rooms.get(chat.current);
    const d = this.drawer;
    return (
      <div class={d === "rooms" ? "app show-rooms" : d === "people" ? "app show-people" : "app"} onClick={this.onAppClick}>
        <header class="topbar">
          <button
            class="icon narrow-only"
            type="button"
            aria-label={d === "rooms" ? "Hide rooms" : "Show rooms"}
            aria-expanded={d === "rooms" ? "true" : "false"}
            data-testid="toggle-rooms"
            ref={this.roomsToggle}
            onClick={() => this.setDrawer(this.drawer === "rooms" ? "" : "rooms")}
          >
            {"\u2630"}
          </button>
          <h1 class="brand">Parley</h1>
          <Conn chat={chat} />
          <span class="spacer" />
          <span class="me" data-testid="me" title={"Signed in as " + me}>
            <Avatar user={me} small />
            <span>{me}</span>
          </span>
          <button class="ghost" type="button" data-testid="signout" onClick={() => signOut()}>
            Sign out
          </button>
        </header>
        {this.sidebar()}
        {this.room(r)}
        {this.peoplePanel(r)}
        <div class="scrim" aria-hidden="true" />
      </div>
    );
  }

  private sidebar(): VNode {
    const { chat } = this.props;
    const shown = [...chat.rooms.values()].filter((r) => r.info || (r.wanted && r.status !== "error" && r.status !== "idle"));
    const rooms = shown.filter((r) => !isDirect(r.name)).sort((a, b) => a.name.localeCompare(b.name));
    const dms = shown.filter((r) => isDirect(r.name)).sort((a, b) => lastAt(b) - lastAt(a) || a.name.localeCompare(b.name));
    return (
      <nav
        class="sidebar"
        aria-label="Rooms and conversations"
        ref={this.side}
        onClick={(ev) => {
          if ((ev.target as HTMLElement).closest("a")) this.setDrawer("");
        }}
      >
        <div class="section-head">
          <h2>Rooms</h2>
          <button class="icon" type="button" aria-label="Create a room" title="Create a room" data-testid="create-room-toggle" onClick={() => this.toggleCreate()}>
            +
          </button>
        </div>
        <form class="inline-form" data-testid="create-room-form" hidden={!this.creating} onSubmit={this.onCreate}>
          <input
            name="room"
            required
            pattern={roomNamePattern}
            maxLength={64}
            autocomplete="off"
            placeholder="room-name"
            aria-label="New room name"
            data-testid="create-room-name"
            title="1-64 characters: a-z, 0-9, - and _"
            ref={this.createName}
          />
          <label class="check">
            <input type="checkbox" data-testid="create-room-private" ref={this.createPrivate} /> Private (members only)
          </label>
          <div class="row">
            <button type="submit" class="primary" data-testid="create-room-submit">
              Create
            </button>
            <button type="button" class="ghost" onClick={() => this.toggleCreate(false)}>
              Cancel
            </button>
          </div>
          <p class="form-error" data-testid="create-room-error" role="alert">
            {this.createError}
          </p>
        </form>
        <ul class="room-list" data-testid="room-list">
          {rooms.map((r) => (
            <RoomItem key={r.name} chat={chat} r={r} />
          ))}
          {rooms.length ? null : <li class="empty">{chat.roomsLoaded ? "No rooms yet" : "Loading\u2026"}</li>}
        </ul>
        <div class="section-head">
          <h2>Direct messages</h2>
        </div>
        <form class="inline-form dm-form" onSubmit={this.onDm}>
          <div class="row">
            <input name="user" autocomplete="off" placeholder="User name" aria-label="Start a conversation with" data-testid="dm-user-input" ref={this.dmUser} />
            <button type="submit" class="ghost" data-testid="dm-user-submit">
              Message
            </button>
          </div>
          <p class="form-error" data-testid="dm-error" role="alert">
            {this.dmError}
          </p>
        </form>
        <ul class="room-list" data-testid="dm-list">
          {dms.map((r) => (
            <RoomItem key={r.name} chat={chat} r={r} />
          ))}
          {dms.length ? null : <li class="empty">None yet</li>}
        </ul>
      </nav>
    );
  }

  private room(r: RoomState | undefined): VNode {
    const { chat, me } = this.props;
    const dm = !!r && isDirect(r.name);
    const title = r ? roomTitle(r.name, me) : "No room open";
    let meta = "Pick a room on the left, or create one";
    let placeholder = "Write a message";
    if (r) {
      const kind = dm ? "Direct conversation" : r.info?.visibility === RoomVisibility.PRIVATE ? "Private room" : "Public room";
      const status = r.status === "joining" ? "joining\u2026" : r.status === "new-dm" ? "no messages yet" : "";
      meta = [kind, status].filter(Boolean).join(" \u00b7 ");
      placeholder = r.status === "new-dm" ? `Write the first message to ${title}` : r.status !== "error" ? `Message ${dm ? title : "#" + r.name}` : "You cannot write here";
    }
    const usable = !!r && r.status !== "error";
    return (
      <main class="room">
        <div class="room-head">
          <div class="room-heading">
            <h2 class="room-title" data-testid="room-title" data-room={r?.name}>
              {title}
            </h2>
            <span class="room-meta" data-testid="room-meta">
              {meta}
            </span>
          </div>
          <button
            class="ghost people-toggle"
            type="button"
            aria-expanded={this.drawer === "people" ? "true" : "false"}
            data-testid="toggle-people"
            ref={this.peopleToggle}
            onClick={() => this.setDrawer(this.drawer === "people" ? "" : "people")}
          >
            People
          </button>
          <button
            class="ghost"
            type="button"
            data-testid="leave-room"
            hidden={!r || !r.wanted || r.status === "new-dm"}
            aria-label={r ? `${dm ? "Close the conversation with" : "Leave"} ${title}` : undefined}
            onClick={() => chat.leave(chat.current)}
          >
            {dm ? "Close" : "Leave"}
          </button>
        </div>
        <div class="room-error" data-testid="room-error" role="alert" hidden={r?.status !== "error"}>
          {r?.error}
        </div>
        <MessageList chat={chat} me={me} room={r} scroll={this} />
        <div class="typing" data-testid="typing" aria-live="polite">
          {typingText(r)}
        </div>
        {r ? this.replyQuote(r) : null}
        <form
          class="composer"
          aria-label="Send a message"
          onSubmit={(ev) => {
            ev.preventDefault();
            this.submit();
          }}
        >
          <textarea
            rows={1}
            data-testid="composer-input"
            aria-label="Message"
            placeholder={placeholder}
            disabled={!usable}
            ref={this.input}
            onKeyDown={this.onComposerKey}
            onInput={this.onComposerInput}
          />
          <button type="submit" class="primary" data-testid="composer-send" disabled={!usable}>
            Send
          </button>
        </form>
      </main>
    );
  }

  // replyQuote is the message being replied to, above the composer.
  private replyQuote(r: RoomState): VNode | null {
    if (this.replying?.room !== r.name) return null;
    const m = r.get(this.replying.seq)?.value;
    if (!m) return null;
    return (
      <div class="composer-reply" data-testid="composer-reply" data-reply-to={String(m.seq)}>
        <span class="quote">
          <span class="muted">Replying to </span>
          <span class="quote-sender">{m.sender}</span>
          <span class="quote-text">{m.deleted ? "message deleted" : quoteText(m.body)}</span>
        </span>
        <button type="button" class="icon" aria-label="Cancel the reply" title="Cancel the reply" data-testid="composer-reply-cancel" onClick={this.cancelReply}>
          {"\u00d7"}
        </button>
      </div>
    );
  }

  private peoplePanel(r: RoomState | undefined): VNode {
    const { chat, me } = this.props;
    const joined = !!r && r.status === "joined";
    const users = joined ? r.shownPresence().sort(([a], [b]) => (a === me ? -1 : b === me ? 1 : a.localeCompare(b))) : [];
    // While the stream is down, the last known presence is shown dimmed.
    const stale = chat.conn !== "online";
    return (
      <aside
        class="people"
        aria-label="People in this room"
        ref={this.people}
        onClick={(ev) => {
          if ((ev.target as HTMLElement).closest('[data-testid="dm-start"]')) this.setDrawer("");
        }}
      >
        <div class="people-head">
          <h2 data-testid="online-count">{joined ? (stale ? "Online (reconnecting\u2026)" : `Online \u2014 ${r.onlineCount()}`) : "Online"}</h2>
          <button class="icon drawer-close" type="button" aria-label="Close the people panel" title="Close" data-testid="close-people" onClick={() => this.setDrawer("", true)}>
            {"\u00d7"}
          </button>
        </div>
        <ul class={stale ? "people-list stale" : "people-list"} data-testid="presence-list">
          {users.map(([user, metas]) => {
            const clients = [...metas.values()].map((m) => m.client || "unnamed client");
            const n = metas.size;
            return (
              <li key={user} data-testid="presence-user" data-user={user}>
                <Avatar user={user} small />
                <span class="who">
                  <span class="name">
                    {user}
                    {user === me ? <span class="muted"> (you)</span> : null}
                  </span>
                  <span class="devices" data-testid="presence-devices" data-count={String(n)} title={clients.join(", ")}>
                    {n === 1 ? "1 device" : `${n} devices`}
                  </span>
                </span>
                {user !== me ? (
                  <button type="button" class="ghost small" data-testid="dm-start" aria-label={`Message ${user}`} title={`Message ${user} privately`} onClick={() => chat.startDirect(user)}>
                    Message
                  </button>
                ) : null}
              </li>
            );
          })}
          {r && !joined ? <li class="empty">{r.status === "new-dm" ? "Nobody here yet" : "Not joined"}</li> : null}
        </ul>
        {joined && r.presenceNext ? (
          <button type="button" class="ghost small presence-more" data-testid="presence-more" disabled={r.presenceLoading} onClick={() => void chat.morePresence(r.name)}>
            {r.presenceLoading ? "Loading\u2026" : `Show more (${Math.max(0, r.onlineCount() - users.length)} more online)`}
          </button>
        ) : null}
        <Members key={r?.name ?? ""} chat={chat} me={me} r={r} />
      </aside>
    );
  }
}

function Conn({ chat }: { chat: Chat }): VNode {
  const { conn, retryAt } = chat;
  const text: Record<typeof conn, string> = {
    connecting: "Connecting\u2026",
    online: "Connected",
    waiting: `Reconnecting in ${Math.max(1, Math.ceil((retryAt - Date.now()) / 1000))}s`,
    offline: "Offline: waiting for the network",
    closed: "Disconnected",
  };
  return (
    <span class="conn" data-testid="conn-state" role="status" data-state={conn}>
      <span class="dot" aria-hidden="true" />
      {text[conn]}
      {conn === "waiting" || conn === "offline" ? (
        <button type="button" class="link" data-testid="conn-retry" onClick={() => chat.reconnectNow()}>
          Retry now
        </button>
      ) : null}
    </span>
  );
}

function RoomItem({ chat, r }: { chat: Chat; r: RoomState }): VNode {
  const current = r.name === chat.current;
  // The open room is read as it scrolls; its counts would only flicker.
  const unread = current ? 0 : r.unread();
  const mentions = current ? 0 : r.mentions();
  const dm = isDirect(r.name);
  const title = roomTitle(r.name, chat.me);
  // A direct room shows whether the other person is there, not a count
  // that would include oneself.
  const online = dm ? 0 : r.onlineCount();
  const otherHere = dm && (r.status === "joined" ? r.presence.has(title) : (r.info?.onlineCount ?? 0) > 0);
  return (
    <li>
      <a
        href={roomHref(r.name)}
        class={["room-item", r.wanted ? "joined" : "", unread ? "has-unread" : ""].join(" ")}
        aria-current={current ? "page" : undefined}
        data-testid="room-item"
        data-room={r.name}
        aria-label={`${dm ? "Conversation with " : "Room "}${title}${online ? `, ${online} online` : ""}${otherHere ? ", online" : ""}${unread ? `, ${unread} unread` : ""}${mentions ? `, ${mentions} mentioning you` : ""}`}
      >
        {dm ? <Avatar user={title} small /> : <span class="hash" aria-hidden="true">#</span>}
        <span class="name">{title}</span>
        {r.info?.visibility === RoomVisibility.PRIVATE ? <span class="tag">private</span> : null}
        {online ? (
          <span class="online" data-testid="room-online" title={`${online} online`}>
            {String(online)}
          </span>
        ) : null}
        {otherHere ? <span class="online" data-testid="dm-online" title={`${title} is here`} /> : null}
        {mentions ? (
          <span class="mentions" data-testid="room-mentions" title={`${mentions} mentioning you`}>
            {"@" + (mentions > 99 ? "99+" : String(mentions))}
          </span>
        ) : null}
        {unread ? (
          <span class="unread" data-testid="room-unread" title={`${unread} unread`}>
            {unread > 99 ? "99+" : String(unread)}
          </span>
        ) : null}
      </a>
    </li>
  );
}

// Members is a private room's member list, with the owner's add and remove.
class Members extends Component<{ chat: Chat; me: string; r?: RoomState }> {
  private removeError = "";
  private addError = "";
  private user = createRef<HTMLInputElement>();

  private remove(m: string): void {
    const { chat, r } = this.props;
    void chat.removeMember(r!.name, m).then((err) => {
      this.removeError = err;
      this.forceUpdate();
    });
  }

  private add = async (ev: Event): Promise<void> => {
    ev.preventDefault();
    const { chat, r } = this.props;
    const user = this.user.current!;
    this.addError = await chat.addMember(r!.name, user.value);
    if (!this.addError) user.value = "";
    this.forceUpdate();
  };

  render(): VNode {
    const { me, r } = this.props;
    const priv = r?.info?.visibility === RoomVisibility.PRIVATE;
    if (!r || !priv) return <section class="members" data-testid="members" hidden />;
    const owner = r.info?.createdBy === me;
    return (
      <section class="members" data-testid="members">
        <h2>Members</h2>
        <ul class="member-list" data-testid="member-list">
          {(r.members ?? []).map((m) => (
            <li key={m} data-testid="member" data-user={m}>
              <Avatar user={m} small />
              <span class="who">
                {m}
                {m === r.info?.createdBy ? <span class="muted"> (owner)</span> : null}
              </span>
              {owner && m !== me ? (
                <button type="button" class="ghost small" aria-label={`Remove ${m}`} data-testid="remove-member" onClick={() => this.remove(m)}>
                  Remove
                </button>
              ) : null}
            </li>
          ))}
        </ul>
        <p class="form-error" role="alert">
          {this.removeError}
        </p>
        {owner ? (
          <form class="inline-form" onSubmit={this.add}>
            <div class="row">
              <input autocomplete="off" placeholder="User name" aria-label="Add a member" data-testid="add-member-input" ref={this.user} />
              <button type="submit" class="ghost" data-testid="add-member-submit">
                Add
              </button>
            </div>
            <p class="form-error" role="alert">
              {this.addError}
            </p>
          </form>
        ) : null}
      </section>
    );
  }
}

function typingText(r: RoomState | undefined): string {
  const users = r ? [...r.typing.keys()].sort() : [];
  if (users.length === 0) return "";
  if (users.length === 1) return `${users[0]} is typing\u2026`;
  if (users.length <= 3) return `${users.slice(0, -1).join(", ")} and ${users.at(-1)} are typing\u2026`;
  return "Several people are typing\u2026";
}

function lastAt(r: RoomState): number {
  const t = r.info?.lastMessageAt;
  return t ? Number(t.seconds) * 1000 : 0;
}
