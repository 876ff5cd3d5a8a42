#!/usr/bin/env python3
"""A small Parley client in Python with grpcio.

It joins one room over the Join stream and prints the room's messages, their
edits, deletes and reactions, and presence; it sends each line of standard input with the SendMessage RPC.
When the connection drops it reconnects and resumes the room after the last
seq it printed, so nothing is lost or printed twice; a send that failed is
retried with the same client_msg_id, so the server stores it once.

    ./generate.sh && /usr/bin/python3 parley_chat.py --dev-user alice --room lobby

With --json it prints one JSON object per event; with --send N it sends N
messages of its own after joining; with --expect M it exits once it has
received M messages. See examples/README.md.
"""

import argparse
import json
import os
import queue
import random
import secrets
import sys
import threading
import time

import grpc

# The generated modules live in ./gen (made by generate.sh) unless
# PARLEY_PY_GEN names another directory.
sys.path.insert(0, os.environ.get("PARLEY_PY_GEN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from parley.v1 import chat_service_pb2 as pb  # noqa: E402
from parley.v1 import chat_service_pb2_grpc as pb_grpc  # noqa: E402

BACKOFF_MIN = 0.2
BACKOFF_MAX = 5.0

# Channel options. gRPC core's BDP probe sends a PING with bursts of data
# to size the flow-control window; answering them roughly doubles the
# server's CPU per delivered message, so turn it off and fix the window.
# Reconnect quickly after a lost connection (the default first backoff is 1 s).
CHANNEL_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(BACKOFF_MAX * 1000)),
]

# Codes for which retrying cannot help.
FATAL = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED,
}

# Codes for which a send is retried (same client_msg_id) after a pause.
RETRY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}

EOF = object()  # marks the end of standard input in the outbox


class JoinError(Exception):
    """A join was refused; code is the Reply's grpc.StatusCode."""

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code


def status_code(number):
    """Maps a Reply's numeric code to a grpc.StatusCode."""
    for c in grpc.StatusCode:
        if c.value[0] == number:
            return c
    return grpc.StatusCode.UNKNOWN


class Chat:
    def __init__(self, args, stub, token):
        self.args = args
        self.stub = stub
        self.metadata = (("authorization", "Bearer " + token), ("parley-client", args.name))
        self.last_seq = args.after  # the last seq printed; resume after it
        self.resume = args.after >= 0  # last_seq is set: rejoin with after_seq
        self.received = 0
        self.joins = 0
        self.online = {}  # user -> {conn id: client name}
        self.seen = {}  # every user and the client names seen online
        self.id_base = f"{args.name}-{secrets.token_hex(4)}"
        self.outbox = queue.Queue()  # bodies to send, then EOF
        for i in range(1, args.send + 1):
            self.outbox.put(f"{args.name} message {i}")
        self.first_join = threading.Event()  # sending starts after the first join
        self.all_sent = threading.Event()  # input ended and everything was sent
        self.requests = None  # the current stream's request queue

    def done(self):
        if self.args.expect > 0:
            return self.received >= self.args.expect
        return self.all_sent.is_set()

    # Receiving: the Join stream, on the main thread.

    def session(self):
        """Opens one Join stream, joins the room, and reads it until it ends."""
        requests = queue.Queue()
        self.requests = requests
        self.online.clear()
        join = pb.JoinRequest.JoinRoom(room=self.args.room)
        if self.resume:
            join.after_seq = self.last_seq
        requests.put(pb.JoinRequest(ref="join", join=join))
        # wait_for_ready: while the channel reconnects, wait instead of failing
        # at once with the last connection error.
        call = self.stub.Join(iter(requests.get, None), metadata=self.metadata, wait_for_ready=True)
        if self.done():
            self.half_close()  # input ended while we were reconnecting
        stop = threading.Timer(2.0, call.cancel)
        closing = False
        try:
            for ev in call:
                self.event(ev)
                if self.done() and not closing:
                    closing = True
                    self.half_close()
                    stop.start()  # in case the server does not end the stream
        finally:
            stop.cancel()
            call.cancel()  # a no-op if the stream has ended
            self.requests = None

    def half_close(self):
        """Ends the request side; the server ends the stream after what it queued."""
        requests = self.requests
        if requests is not None:
            requests.put(None)

    def event(self, ev):
        kind = ev.WhichOneof("event")
        if kind == "reply":
            self.reply(ev.reply)
        elif kind == "joined":
            self.joined(ev.joined)
        elif kind == "message":
            self.message(ev.message)
        elif kind == "presence_diff":
            self.presence_diff(ev.presence_diff)
        elif kind == "typing":
            if ev.typing.active and not self.args.json:
                print(f"* {ev.typing.user} is typing…", flush=True)
        elif kind == "edit":
            e = ev.edit
            self.entry("edit", e, dict(body=e.body), f"{e.sender} edited #{e.target_seq}: {e.body}")
        elif kind == "delete":
            e = ev.delete
            self.entry("delete", e, {}, f"{e.sender} deleted #{e.target_seq}")
        elif kind == "reaction_added":
            e = ev.reaction_added
            self.entry("reaction_added", e, dict(emoji=e.emoji), f"{e.sender} reacted {e.emoji} to #{e.target_seq}")
        elif kind == "reaction_removed":
            e = ev.reaction_removed
            self.entry("reaction_removed", e, dict(emoji=e.emoji), f"{e.sender} took back {e.emoji} on #{e.target_seq}")
        elif kind == "replayed":
            pass  # stored messages are done; live ones follow
        else:
            # None: a kind of event newer than these stubs (docs/clients.md,
            # "Clients that do not know a kind"). protobuf decodes it with the
            # oneof unset, its bytes kept as unknown fields. Skip it and keep
            # reading; the position stays at the last entry known.
            pass

    def entry(self, name, e, fields, text):
        """Handles an edit, a delete or a reaction: an entry of the room's log
        with its own seq, which moves the position like a message does. A client
        that shows messages would apply it to the message target_seq
        (docs/clients.md, "Building the view"); this one prints it."""
        if self.resume and e.seq <= self.last_seq:
            return  # printed before a reconnect
        self.last_seq, self.resume = e.seq, True
        if self.args.json:
            emit(event=name, room=e.room, seq=e.seq, sender=e.sender, target_seq=e.target_seq, **fields)
        else:
            print(f"* #{e.seq} {text}", flush=True)

    def reply(self, r):
        # The only frame this client sends is the join, with ref "join"; a
        # reply with an empty ref is a notice from the server (PERMISSION_DENIED:
        # we were removed from the room).
        code = status_code(r.code)
        if code == grpc.StatusCode.OUT_OF_RANGE:
            # The server's history ends before our position: it lost messages
            # (a memory store restarted). Follow the room from its newest message.
            warn(f"room {self.args.room} restarted on the server ({r.error}); following it from now")
            self.resume = False
            self.requests.put(pb.JoinRequest(ref="join", join=pb.JoinRequest.JoinRoom(room=self.args.room)))
        elif code != grpc.StatusCode.OK:
            raise JoinError(code, r.error)

    def joined(self, j):
        self.joins += 1
        after = self.last_seq if self.resume else None
        if not self.resume:
            self.last_seq, self.resume = j.head_seq, True
        for p in j.presence:
            self.track(p)
        self.first_join.set()
        users = [p.user for p in j.presence]
        if self.args.json:
            emit(event="joined", room=j.room, head_seq=j.head_seq, after_seq=after, online=users)
        else:
            print(f"* joined #{j.room} (newest seq {j.head_seq}); online: {', '.join(users)}", flush=True)

    def message(self, m):
        if self.resume and m.seq <= self.last_seq:
            return  # printed before a reconnect
        self.last_seq, self.resume = m.seq, True
        self.received += 1
        if self.args.json:
            emit(event="message", room=m.room, seq=m.seq, sender=m.sender, body=m.body,
                 client_msg_id=m.client_msg_id, reply_to_seq=m.reply_to_seq)
        else:
            at = m.sent_at.ToDatetime().strftime("%H:%M:%S")
            reply = f"(re #{m.reply_to_seq}) " if m.reply_to_seq else ""
            print(f"#{m.seq} [{at}] {m.sender}: {reply}{m.body}", flush=True)

    def presence_diff(self, d):
        for p in d.joins:
            self.track(p)
            if not self.args.json:
                print(f"* {p.user} came online ({client_names(p)})", flush=True)
        for p in d.leaves:
            conns = self.online.get(p.user, {})
            for m in p.metas:
                conns.pop(m.conn_id, None)
            if not conns:
                self.online.pop(p.user, None)
            if not self.args.json:
                print(f"* {p.user} went away ({client_names(p)})", flush=True)
        if self.args.json:
            emit(event="presence_diff", room=d.room, joins=[p.user for p in d.joins], leaves=[p.user for p in d.leaves])

    def track(self, p):
        """Records one user's connections as online."""
        conns = self.online.setdefault(p.user, {})
        names = self.seen.setdefault(p.user, set())
        for m in p.metas:
            conns[m.conn_id] = m.client
            names.add(m.client)

    def print_final(self):
        online = sorted(self.online)
        if self.args.json:
            emit(event="presence", room=self.args.room, online=online,
                 seen={u: sorted(names) for u, names in self.seen.items()})
        else:
            print(f"* online in #{self.args.room} now: {', '.join(online)}", flush=True)

    # Sending: SendMessage calls, one at a time in order, on their own thread.

    def send_loop(self):
        self.first_join.wait()
        n = 0
        while True:
            body = self.outbox.get()
            if body is EOF:
                self.all_sent.set()
                if self.done():  # not with --expect: that waits for messages
                    self.half_close()
                return
            n += 1
            self.send(body, f"{self.id_base}-{n}")

    def send(self, body, msg_id):
        """Sends one message, retrying transient failures with the same id."""
        delay = BACKOFF_MIN
        req = pb.SendMessageRequest(room=self.args.room, body=body, client_msg_id=msg_id)
        while True:
            try:
                # wait_for_ready: while the connection is down, wait for it
                # to come back instead of failing at once.
                self.stub.SendMessage(req, metadata=self.metadata, timeout=10, wait_for_ready=True)
                return
            except grpc.RpcError as e:
                if e.code() not in RETRY:
                    warn(f"not sent ({e.code().name}: {e.details()}): {body!r}")
                    return
                time.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(2 * delay, BACKOFF_MAX)

    def read_stdin(self):
        for line in sys.stdin:
            line = line.strip()
            if line:
                self.outbox.put(line)
        self.outbox.put(EOF)


def client_names(p):
    return ", ".join(m.client or "unnamed client" for m in p.metas)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def warn(text):
    print("!", text, file=sys.stderr, flush=True)


def status(args, event, text):
    """Reports a change of connection state: to stderr, and with --json as an event."""
    print("*", text, file=sys.stderr, flush=True)
    if args.json:
        emit(event=event, text=text)


def describe(err):
    if isinstance(err, grpc.RpcError):
        return f"{err.code().name}: {err.details()}"
    return str(err)


def main():
    ap = argparse.ArgumentParser(description="A Parley chat client: joins a room, prints it, sends stdin lines.")
    ap.add_argument("--addr", default=os.environ.get("PARLEY_ADDR", "127.0.0.1:8080"), help="server host:port (env PARLEY_ADDR)")
    ap.add_argument("--token", default=os.environ.get("PARLEY_TOKEN", ""), help="bearer token (env PARLEY_TOKEN)")
    ap.add_argument("--dev-user", default="", help="without a token: log in as this user through DevLogin (a --dev server only)")
    ap.add_argument("--room", default="lobby", help="room to join")
    ap.add_argument("--name", default="example-python", help="client name other users see in presence")
    ap.add_argument("--tls", action="store_true", help="connect with TLS, verifying the server against the system's roots")
    ap.add_argument("--after", type=int, default=-1, help="on the first join, replay stored messages after this seq (0: all); -1: live only")
    ap.add_argument("--send", type=int, default=0, help="after joining, send this many messages of our own")
    ap.add_argument("--expect", type=int, default=0, help="exit after receiving this many messages (0: at end of input)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per event instead of text")
    args = ap.parse_args()

    if args.tls:
        channel = grpc.secure_channel(args.addr, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(args.addr, options=CHANNEL_OPTIONS)
    stub = pb_grpc.ChatServiceStub(channel)
    token = args.token
    if not token:
        if not args.dev_user:
            sys.exit("error: no token: pass --token, set PARLEY_TOKEN, or use --dev-user NAME on a --dev server")
        token = stub.DevLogin(pb.DevLoginRequest(user=args.dev_user), timeout=10).token

    chat = Chat(args, stub, token)
    threading.Thread(target=chat.read_stdin, daemon=True).start()
    threading.Thread(target=chat.send_loop, daemon=True).start()
    delay = BACKOFF_MIN
    while True:
        joins_before = chat.joins
        err = None
        try:
            chat.session()
        except (grpc.RpcError, JoinError) as e:
            err = e
        code = err.code() if isinstance(err, grpc.RpcError) else getattr(err, "code", None)
        if code in FATAL:
            sys.exit(f"error: {describe(err)}")
        if chat.done():
            chat.print_final()
            return
        if chat.joins > joins_before:
            delay = BACKOFF_MIN  # the stream worked for a while
        wait = delay * random.uniform(0.8, 1.2)
        delay = min(2 * delay, BACKOFF_MAX)
        status(args, "reconnecting", f"connection lost ({describe(err) if err else 'stream ended'}); reconnecting in {wait:.1f}s")
        time.sleep(wait)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
