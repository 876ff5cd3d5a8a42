// The page: sign in (dev login on a --dev server, else a pasted token), then
// the chat. The token lives in sessionStorage and goes out only in request
// headers and the Join stream's first frame: never in a URL or a cookie.
import { render } from "preact";
import "./style.css";
import { newApi } from "./api";
import { Chat } from "./chat";
import { Login } from "./login";
import { ChatView, Ticker } from "./view";

const tokenKey = "parley.token";
const userKey = "parley.user";

let token: string | null = sessionStorage.getItem(tokenKey);
const api = newApi(() => token);
const root = document.getElementById("app")!;
root.replaceChildren(); // the <noscript>

function roomFromHash(): string {
  const m = /^#\/r\/(.+)$/.exec(location.hash);
  if (!m) return "";
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return "";
  }
}

function signIn(newToken: string, user: string): void {
  token = newToken;
  sessionStorage.setItem(tokenKey, newToken);
  sessionStorage.setItem(userKey, user);
  showChat(user);
}

function signOut(why = ""): void {
  token = null;
  sessionStorage.removeItem(tokenKey);
  sessionStorage.removeItem(userKey);
  showLogin(why);
}

let current: Chat | null = null;
// A fresh page on every sign-in and sign-out, never one redrawn from the last.
let mounts = 0;

function showChat(user: string): void {
  const ticker = new Ticker();
  const chat = new Chat(user, token!, api, () => ticker.update(), (why) => {
    chat.stop();
    current = null;
    signOut(`Signed out: ${why}`);
  });
  current = chat;
  // A page opened by e2e/perf-redraw.mjs or a test has window.parleyPerf set
  // before it loads: it gets the chat, and a way to draw at once, to time
  // redraws and see what they touch.
  const perf = (window as { parleyPerf?: object }).parleyPerf;
  if (perf) Object.assign(perf, { chat, flush: () => ticker.flush() });
  const out = () => {
    chat.stop();
    current = null;
    signOut();
  };
  render(<ChatView key={++mounts} me={user} chat={chat} ticker={ticker} signOut={out} />, root);
  chat.start(roomFromHash());
}

addEventListener("hashchange", () => {
  const room = roomFromHash();
  if (current && room && room !== current.current) current.open(room);
});

function showLogin(notice: string): void {
  render(<Login key={++mounts} api={api} notice={notice} devLogin={devLogin} tokenLogin={loginWithToken} />, root);
}

async function devLogin(user: string): Promise<void> {
  const resp = await api.devLogin({ user });
  signIn(resp.token, user);
}

async function loginWithToken(t: string): Promise<void> {
  const user = tokenUser(t);
  if (!user) throw new Error("That does not look like a Parley token.");
  const previous = token;
  token = t;
  try {
    await api.listRooms({ pageSize: 1 }); // proves the server accepts it
  } catch (err) {
    token = previous;
    throw err;
  }
  signIn(t, user);
}

// tokenUser reads the user id (sub) from a JWT, for display only: the server
// verifies the token on every call.
function tokenUser(t: string): string {
  try {
    const payload = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return String(JSON.parse(atob(payload)).sub ?? "");
  } catch {
    return "";
  }
}

const savedUser = sessionStorage.getItem(userKey);
if (token && savedUser) showChat(savedUser);
else showLogin("");
