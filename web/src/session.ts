// The Join stream: one WebSocket (improbable-eng grpc-web) carrying every
// joined room. JoinSession owns the connection: it opens it, proves it with a
// handshake, matches replies to requests by ref, and reconnects with backoff
// when it drops. What to do after a (re)connect — rejoin rooms with after_seq,
// resend unacknowledged messages — is the app's job, in onOpen.
import { grpc } from "@improbable-eng/grpc-web";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { messageClass, type Wrapped } from "./adapter";
import { CLIENT_NAME } from "./api";
import { JoinRequestSchema, JoinResponseSchema, type JoinResponse } from "./gen/parley/v1/chat_service_pb";
import { ReplySchema, type Reply } from "./gen/parley/v1/types_pb";

const JoinRequestClass = messageClass(JoinRequestSchema);
const JoinResponseClass = messageClass(JoinResponseSchema);

const joinMethod = {
  methodName: "Join",
  service: { serviceName: "parley.v1.ChatService" },
  requestStream: true,
  responseStream: true,
  requestType: JoinRequestClass,
  responseType: JoinResponseClass,
};

/** ConnState is what the connection indicator shows. */
export type ConnState = "connecting" | "online" | "waiting" | "offline" | "closed";

/** Frame is a JoinRequest without its ref, which the session assigns. */
export type Frame = MessageInitShape<typeof JoinRequestSchema>["frame"];

/** Hooks are the app's side of a session. */
export interface SessionHooks {
  state(state: ConnState, retryAt?: number): void;
  /** The stream is up and authenticated: rejoin rooms, resend pending sends. */
  open(): void;
  /** A server event that is not a reply. */
  event(ev: JoinResponse["event"]): void;
  /** The stream ended for good (the token was rejected). */
  fatal(message: string): void;
}

/** StreamLost is the reply code given to requests cut off by a dropped stream. */
export const StreamLost = -1;

const handshakeTimeoutMs = 10000;
const heartbeatMs = 25000;
const maxBackoffMs = 10000;
const grpcUnauthenticated = 16;

type Pending = { resolve(r: Reply): void; timer?: number };

/** JoinSession keeps one Join stream open until stop(). */
export class JoinSession {
  private client?: grpc.Client<Wrapped<typeof JoinRequestSchema>, Wrapped<typeof JoinResponseSchema>>;
  private gen = 0;
  private nextRef = 0;
  private pending = new Map<string, Pending>();
  private attempt = 0;
  private retryTimer?: number;
  private heartbeat?: number;
  private stopped = false;
  private waiters = new Set<() => void>();
  online = false;

  constructor(
    private readonly host: string,
    private readonly token: () => string,
    private readonly hooks: SessionHooks,
  ) {
    addEventListener("online", this.onNetworkOnline);
    addEventListener("offline", this.onNetworkOffline);
  }

  /** start opens the stream. */
  start(): void {
    this.connect();
  }

  /** stop closes the stream for good. */
  stop(): void {
    this.stopped = true;
    removeEventListener("online", this.onNetworkOnline);
    removeEventListener("offline", this.onNetworkOffline);
    this.drop();
    this.hooks.state("closed");
  }

  /** reconnectNow skips the rest of the backoff wait. */
  reconnectNow(): void {
    if (!this.stopped && !this.online) this.connect();
  }

  /**
   * request sends a frame and resolves with its reply. It never rejects: a
   * frame cut off by a dropped stream resolves with code StreamLost, and a
   * frame sent while the stream is down resolves that way at once.
   */
  request(frame: Frame, timeoutMs = 0): Promise<Reply> {
    return new Promise((resolve) => {
      if (!this.client) {
        resolve(lost());
        return;
      }
      const ref = String(++this.nextRef);
      const p: Pending = { resolve };
      if (timeoutMs > 0) {
        p.timer = window.setTimeout(() => this.restart("no reply from the server"), timeoutMs);
      }
      this.pending.set(ref, p);
      this.client.send(new JoinRequestClass(create(JoinRequestSchema, { ref, frame })));
    });
  }

  /** whenOnline resolves once the stream is up, or after timeoutMs. */
  whenOnline(timeoutMs: number): Promise<void> {
    if (this.online) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        window.clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = window.setTimeout(done, timeoutMs);
      this.waiters.add(done);
    });
  }

  /** notify sends a frame whose reply nobody waits for (typing). */
  notify(frame: Frame): void {
    if (this.online) void this.request(frame);
  }

  private connect(): void {
    window.clearTimeout(this.retryTimer);
    this.drop();
    const gen = ++this.gen;
    const c = grpc.client<Wrapped<typeof JoinRequestSchema>, Wrapped<typeof JoinResponseSchema>, typeof joinMethod>(joinMethod, { host: this.host, transport: grpc.WebsocketTransport() });
    c.onMessage((m) => {
      if (gen === this.gen) this.receive(m.msg);
    });
    c.onEnd((code, message) => {
      if (gen === this.gen) this.ended(code, message);
    });
    c.start({ authorization: `Bearer ${this.token()}`, "parley-client": CLIENT_NAME });
    this.client = c;
    this.hooks.state("connecting");
    // A refresh with the current token is the handshake: its reply proves
    // the stream is open and authenticated, which the transport cannot tell.
    void this.request({ case: "refresh", value: { token: this.token() } }, handshakeTimeoutMs).then((r) => {
      if (gen !== this.gen || r.code === StreamLost) return;
      if (r.code !== 0) {
        this.ended(r.code, r.error);
        return;
      }
      this.attempt = 0;
      this.online = true;
      this.hooks.state("online");
      this.heartbeat = window.setInterval(() => this.ping(gen), heartbeatMs);
      this.hooks.open();
      for (const w of [...this.waiters]) w();
    });
  }

  // ping proves the stream is alive: a dead TCP connection may go unnoticed
  // by the browser for minutes.
  private ping(gen: number): void {
    if (gen === this.gen) void this.request({ case: "refresh", value: { token: this.token() } }, handshakeTimeoutMs);
  }

  private receive(resp: JoinResponse): void {
    if (resp.event.case !== "reply") {
      this.hooks.event(resp.event);
      return;
    }
    const r = resp.event.value;
    const p = this.pending.get(r.ref);
    if (!p) {
      // A reply without a ref is the server's own notice, such as being
      // removed from a private room.
      if (!r.ref) this.hooks.event(resp.event);
      return;
    }
    this.pending.delete(r.ref);
    window.clearTimeout(p.timer);
    p.resolve(r);
  }

  private ended(code: number, message: string): void {
    this.drop();
    if (this.stopped) return;
    if (code === grpcUnauthenticated) {
      this.stopped = true;
      this.hooks.fatal(message || "your sign-in is no longer valid");
      return;
    }
    this.scheduleRetry();
  }

  private restart(why: string): void {
    console.warn("parley: restarting the stream:", why);
    this.drop();
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (!navigator.onLine) {
      this.hooks.state("offline");
      return; // the online event reconnects
    }
    const base = Math.min(maxBackoffMs, 500 * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt++;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
    this.hooks.state("waiting", Date.now() + delay);
  }

  // drop forgets the current stream, closing it, and settles its requests.
  private drop(): void {
    this.gen++;
    this.online = false;
    window.clearInterval(this.heartbeat);
    if (this.client) {
      try {
        this.client.close();
      } catch {
        // already closed
      }
      this.client = undefined;
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      window.clearTimeout(p.timer);
      p.resolve(lost());
    }
  }

  private onNetworkOnline = (): void => {
    this.attempt = 0;
    this.reconnectNow();
  };

  private onNetworkOffline = (): void => {
    if (!this.online) {
      window.clearTimeout(this.retryTimer);
      this.hooks.state("offline");
    }
  };
}

function lost(): Reply {
  return create(ReplySchema, { code: StreamLost, error: "connection lost" });
}
