// A small Parley client in TypeScript on Node: native gRPC over HTTP/2 with
// protobuf-es and @connectrpc/connect-node. It joins one room over the
// bidirectional Join stream, prints the room's messages, their edits,
// deletes and reactions, and presence, sends each line of standard input
// as a message, and when the connection drops it reconnects and resumes
// the room after the last seq it printed. Unacked lines are sent again with the same client_msg_id, so the server stores
// each one once.
//
//   npm start -- --dev-user alice --room lobby
//
// With --json it prints one JSON object per event; with --send N it sends N
// messages of its own after joining; with --expect M it exits once it has
// received M messages. See examples/README.md.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createWritableIterable, type WritableIterable } from "@connectrpc/connect/protocol";
import * as readline from "node:readline";
import { parseArgs } from "node:util";
import { ChatService, JoinRequestSchema, type JoinRequest, type JoinResponse } from "./gen/parley/v1/chat_service_pb";
import type { Joined, Message, Presence, PresenceDiff, Reply } from "./gen/parley/v1/types_pb";

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 5000;

const { values: flags } = parseArgs({
  options: {
    addr: { type: "string", default: process.env.PARLEY_ADDR || "127.0.0.1:8080" },
    token: { type: "string", default: process.env.PARLEY_TOKEN || "" },
    "dev-user": { type: "string", default: "" },
    room: { type: "string", default: "lobby" },
    name: { type: "string", default: "example-node" },
    tls: { type: "boolean", default: false },
    after: { type: "string", default: "-1" },
    send: { type: "string", default: "0" },
    expect: { type: "string", default: "0" },
    json: { type: "boolean", default: false },
  },
});

type ChatClient = Client<typeof ChatService>;
// A request frame: { case: "join", value: { room } }, { case: "send", ... }.
type Frame = MessageInitShape<typeof JoinRequestSchema>["frame"];

// An outgoing message not yet acknowledged by the server.
interface Outgoing {
  body: string;
  id: string;
  sent: boolean; // sent on the current stream, reply awaited
}

class Chat {
  private lastSeq = 0n; // the last seq printed; resume after it
  private resume = false; // lastSeq is set: rejoin with after_seq
  private received = 0;
  joins = 0;

  private pending: Outgoing[] = [];
  private readonly idBase = `${flags.name}-${Math.random().toString(16).slice(2, 10)}`;
  private idSeq = 0;
  private retryTimer?: NodeJS.Timeout;

  // The current stream: its request side and its unanswered sends, by ref.
  private requests?: WritableIterable<JoinRequest>;
  private refs = new Map<string, Outgoing>();
  private nextRef = 0;

  private online = new Map<string, Map<string, string>>(); // user -> conn id -> client
  private seen = new Map<string, Set<string>>(); // every user and client name seen online
  private eof = false;

  constructor(
    private readonly api: ChatClient,
    private readonly token: string,
  ) {
    const after = BigInt(flags.after);
    if (after >= 0n) {
      this.lastSeq = after;
      this.resume = true;
    }
    // Sent right after the first join frame, which the server handles first.
    for (let i = 1; i <= Number(flags.send); i++) this.queue(`${flags.name} message ${i}`);
  }

  // done reports whether the client has what it came for.
  done(): boolean {
    const expect = Number(flags.expect);
    return expect > 0 ? this.received >= expect : this.eof && this.pending.length === 0;
  }

  // session opens one Join stream, joins the room (resuming after the last
  // seq seen), resends unacknowledged messages, and reads events until the
  // stream ends or the client is done.
  async session(): Promise<void> {
    const requests = createWritableIterable<JoinRequest>();
    const abort = new AbortController();
    this.requests = requests;
    this.refs.clear();
    this.online.clear();
    const responses = this.api.join(requests, {
      headers: { authorization: `Bearer ${this.token}`, "parley-client": flags.name },
      signal: abort.signal,
    });
    this.request({ case: "join", value: { room: flags.room, afterSeq: this.resume ? this.lastSeq : undefined } });
    // Frames are handled in order, so sends after the join go to a joined room.
    for (const p of this.pending) p.sent = false;
    this.flush();
    let stop: NodeJS.Timeout | undefined;
    try {
      for await (const ev of responses) {
        this.event(ev);
        this.flush();
        if (this.done() && stop === undefined) {
          // Half-close; the server ends the stream after what it queued.
          requests.close();
          stop = setTimeout(() => abort.abort(), 2000);
        }
      }
    } finally {
      clearTimeout(stop);
      requests.close();
      this.requests = undefined;
    }
  }

  // request sends a frame with a fresh ref and returns the ref. A broken
  // stream shows up as an error from the responses.
  private request(frame: Frame): string {
    const ref = String(++this.nextRef);
    this.requests?.write(create(JoinRequestSchema, { ref, frame })).catch(() => {});
    return ref;
  }

  // flush sends every pending message not yet sent on this stream.
  private flush(): void {
    if (!this.requests) return;
    for (const p of this.pending) {
      if (p.sent) continue;
      p.sent = true;
      const ref = this.request({ case: "send", value: { room: flags.room, body: p.body, clientMsgId: p.id } });
      this.refs.set(ref, p);
    }
  }

  // queue adds a message to send; its client_msg_id makes resending it safe.
  private queue(body: string): void {
    this.pending.push({ body, id: `${this.idBase}-${++this.idSeq}`, sent: false });
  }

  input(line: string): void {
    line = line.trim();
    if (line === "") return;
    this.queue(line);
    this.flush();
  }

  endOfInput(): void {
    this.eof = true;
    if (this.done()) this.requests?.close();
  }

  private event(ev: JoinResponse): void {
    switch (ev.event.case) {
      case "reply":
        return this.reply(ev.event.value);
      case "joined":
        return this.joined(ev.event.value);
      case "message":
        return this.message(ev.event.value);
      case "presenceDiff":
        return this.presenceDiff(ev.event.value);
      case "typing":
        if (!flags.json && ev.event.value.active) console.log(`* ${ev.event.value.user} is typing…`);
        return;
      case "edit": {
        const e = ev.event.value;
        return this.entry(e.seq, { event: "edit", room: e.room, seq: Number(e.seq), sender: e.sender, target_seq: Number(e.targetSeq), body: e.body },
          `${e.sender} edited #${e.targetSeq}: ${e.body}`);
      }
      case "delete": {
        const e = ev.event.value;
        return this.entry(e.seq, { event: "delete", room: e.room, seq: Number(e.seq), sender: e.sender, target_seq: Number(e.targetSeq) },
          `${e.sender} deleted #${e.targetSeq}`);
      }
      case "reactionAdded": {
        const e = ev.event.value;
        return this.entry(e.seq, { event: "reaction_added", room: e.room, seq: Number(e.seq), sender: e.sender, target_seq: Number(e.targetSeq), emoji: e.emoji },
          `${e.sender} reacted ${e.emoji} to #${e.targetSeq}`);
      }
      case "reactionRemoved": {
        const e = ev.event.value;
        return this.entry(e.seq, { event: "reaction_removed", room: e.room, seq: Number(e.seq), sender: e.sender, target_seq: Number(e.targetSeq), emoji: e.emoji },
          `${e.sender} took back ${e.emoji} on #${e.targetSeq}`);
      }
      case "replayed": // stored messages are done; live ones follow
        return;
      default:
        // A kind of event newer than this code (docs/clients.md, "Clients
        // that do not know a kind"): protobuf-es decodes it with the oneof
        // unset (case undefined), its bytes kept as unknown fields. Skip it
        // and keep reading; the position stays at the last entry known.
        return;
    }
  }

  // entry handles an edit, a delete or a reaction: an entry of the room's log
  // with its own seq, which moves the position like a message does. A client
  // that shows messages would apply it to the message targetSeq
  // (docs/clients.md, "Building the view"); this one prints it.
  private entry(seq: bigint, asJSON: object, text: string): void {
    if (this.resume && seq <= this.lastSeq) return; // printed before a reconnect
    this.lastSeq = seq;
    this.resume = true;
    if (flags.json) emit(asJSON);
    else console.log(`* #${seq} ${text}`);
  }

  // reply matches an answer to the frame that asked, by ref.
  private reply(r: Reply): void {
    const p = this.refs.get(r.ref);
    this.refs.delete(r.ref);
    if (p) {
      if (r.code === Code.ResourceExhausted || r.code === Code.Unavailable || r.code === Code.FailedPrecondition) {
        // Sending too fast, the server is busy, or the room is being joined
        // again: send it again later, with the same client_msg_id.
        p.sent = false;
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          this.flush();
        }, 500);
        return;
      }
      this.pending = this.pending.filter((q) => q !== p);
      if (r.code !== 0) warn(`not sent (${Code[r.code]}: ${r.error}): ${JSON.stringify(p.body)}`);
      return;
    }
    if (r.code === Code.OutOfRange) {
      // The server's history ends before our position: it lost messages (a
      // memory store restarted). Follow the room from its newest message.
      warn(`room ${flags.room} restarted on the server (${r.error}); following it from now`);
      this.resume = false;
      this.request({ case: "join", value: { room: flags.room } });
    } else if (r.code !== 0) {
      // The join failed (no such room, private room, bad name), or, with an
      // empty ref, the server says we were removed from the room: give up.
      throw new ConnectError(r.error, r.code);
    }
  }

  private joined(j: Joined): void {
    this.joins++;
    const after = this.resume ? Number(this.lastSeq) : null;
    if (!this.resume) {
      this.lastSeq = j.headSeq;
      this.resume = true;
    }
    for (const p of j.presence) this.track(p);
    const users = j.presence.map((p) => p.user);
    if (flags.json) {
      emit({ event: "joined", room: j.room, head_seq: Number(j.headSeq), after_seq: after, online: users });
    } else {
      console.log(`* joined #${j.room} (newest seq ${j.headSeq}); online: ${users.join(", ")}`);
    }
  }

  private message(m: Message): void {
    if (this.resume && m.seq <= this.lastSeq) return; // printed before a reconnect
    this.lastSeq = m.seq;
    this.resume = true;
    this.received++;
    if (flags.json) {
      emit({ event: "message", room: m.room, seq: Number(m.seq), sender: m.sender, body: m.body, client_msg_id: m.clientMsgId, reply_to_seq: Number(m.replyToSeq) });
    } else {
      const at = m.sentAt ? timestampDate(m.sentAt).toLocaleTimeString() : "";
      const reply = m.replyToSeq ? `(re #${m.replyToSeq}) ` : "";
      console.log(`#${m.seq} [${at}] ${m.sender}: ${reply}${m.body}`);
    }
  }

  private presenceDiff(d: PresenceDiff): void {
    for (const p of d.joins) {
      this.track(p);
      if (!flags.json) console.log(`* ${p.user} came online (${clientNames(p)})`);
    }
    for (const p of d.leaves) {
      const conns = this.online.get(p.user);
      for (const m of p.metas) conns?.delete(m.connId);
      if (conns?.size === 0) this.online.delete(p.user);
      if (!flags.json) console.log(`* ${p.user} went away (${clientNames(p)})`);
    }
    if (flags.json) {
      emit({ event: "presence_diff", room: d.room, joins: d.joins.map((p) => p.user), leaves: d.leaves.map((p) => p.user) });
    }
  }

  // track records one user's connections as online.
  private track(p: Presence): void {
    const conns = this.online.get(p.user) ?? new Map<string, string>();
    const names = this.seen.get(p.user) ?? new Set<string>();
    for (const m of p.metas) {
      conns.set(m.connId, m.client);
      names.add(m.client);
    }
    this.online.set(p.user, conns);
    this.seen.set(p.user, names);
  }

  // printFinal prints who was seen online (in --json mode, one line that a
  // test can check).
  printFinal(): void {
    const online = [...this.online.keys()].sort();
    if (flags.json) {
      const seen = Object.fromEntries([...this.seen].map(([u, names]) => [u, [...names].sort()]));
      emit({ event: "presence", room: flags.room, online, seen });
    } else {
      console.log(`* online in #${flags.room} now: ${online.join(", ")}`);
    }
  }
}

// fatal reports whether an error that ended a stream should end the client
// rather than cause a reconnect: retrying cannot fix these.
function fatal(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return [Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.NotFound, Code.Unimplemented].includes(code);
}

function describe(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code]}: ${e.rawMessage}`;
}

function clientNames(p: Presence): string {
  return p.metas.map((m) => m.client || "unnamed client").join(", ");
}

function emit(v: object): void {
  process.stdout.write(JSON.stringify(v) + "\n");
}

function warn(text: string): void {
  process.stderr.write(`! ${text}\n`);
}

// status reports a change of connection state: to stderr as text, and in
// --json mode also as an event.
function status(event: string, text: string): void {
  process.stderr.write(`* ${text}\n`);
  if (flags.json) emit({ event, text });
}

async function main(): Promise<void> {
  const transport = createGrpcTransport({
    baseUrl: `${flags.tls ? "https" : "http"}://${flags.addr}`,
    // Node's HTTP/2 sends no BDP pings; a larger fixed stream window only
    // lets a burst of messages through without waiting for WINDOW_UPDATEs.
    nodeOptions: { settings: { initialWindowSize: 1 << 20 } },
  });
  const api = createClient(ChatService, transport);
  let token = flags.token;
  if (!token) {
    if (!flags["dev-user"]) throw new Error("no token: pass --token, set PARLEY_TOKEN, or use --dev-user NAME on a --dev server");
    token = (await api.devLogin({ user: flags["dev-user"] }, { timeoutMs: 10_000 })).token;
  }

  const chat = new Chat(api, token);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => chat.input(line));
  rl.on("close", () => chat.endOfInput());

  let delay = BACKOFF_MIN_MS;
  for (;;) {
    const joinsBefore = chat.joins;
    let err: unknown = new ConnectError("stream ended", Code.Unavailable);
    try {
      await chat.session();
    } catch (e) {
      err = e;
    }
    if (fatal(err)) throw err;
    if (chat.done()) {
      chat.printFinal();
      return;
    }
    if (chat.joins > joinsBefore) delay = BACKOFF_MIN_MS; // the stream worked for a while
    const wait = Math.round(delay * (0.8 + 0.4 * Math.random()));
    delay = Math.min(2 * delay, BACKOFF_MAX_MS);
    status("reconnecting", `connection lost (${describe(err)}); reconnecting in ${wait}ms`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

main().then(
  // stdin and the HTTP/2 session would keep Node running: exit once stdout is written.
  () => process.stdout.write("", () => process.exit(0)),
  (err) => {
    process.stderr.write(`error: ${err instanceof ConnectError ? describe(err) : String(err)}\n`);
    process.exit(1);
  },
);
