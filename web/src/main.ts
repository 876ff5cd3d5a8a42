// The page: sign in (dev login on a --dev server, else a pasted token), then
// the chat. The token lives in sessionStorage and goes out only in request
// headers and the Join stream's first frame: never in a URL or a cookie.
import "./style.css";
import { Code, codeOf, messageOf, newApi } from "./api";
import { Chat } from "./chat";
import { h } from "./dom";
import { ChatView } from "./view";

const tokenKey = "parley.token";
const userKey = "parley.user";
const userPattern = "[A-Za-z0-9_.\\-]{1,64}";

let token: string | null = sessionStorage.getItem(tokenKey);
const api = newApi(() => token);
const root = document.getElementById("app")!;

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

function showChat(user: string): void {
  const view = new ChatView(user, () => {
    current?.stop();
    current = null;
    signOut();
  });
  const chat = new Chat(user, token!, api, () => view.update(), (why) => {
    chat.stop();
    current = null;
    signOut(`Signed out: ${why}`);
  });
  current = chat;
  // A page opened by e2e/perf-redraw.mjs has window.parleyPerf set before it
  // loads: it gets the chat, and a way to draw at once, to time redraws.
  const perf = (window as { parleyPerf?: object }).parleyPerf;
  if (perf) Object.assign(perf, { chat, flush: () => view.flush() });
  view.attach(chat);
  root.replaceChildren(view.root);
  chat.start(roomFromHash());
}

addEventListener("hashchange", () => {
  const room = roomFromHash();
  if (current && room && room !== current.current) current.open(room);
});

function showLogin(notice: string): void {
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "login-error" }, notice);
  const name = h("input", { id: "login-name", name: "user", required: true, pattern: userPattern, maxlength: "64", autocomplete: "username", autofocus: true, placeholder: "e.g. alice", "data-testid": "login-name" });
  const tokenBox = h("textarea", { id: "login-token", name: "token", rows: "4", spellcheck: "false", autocomplete: "off", "data-testid": "login-token" });
  const devPart = h("div", { class: "field" }, h("label", { for: "login-name" }, "Your name"), name, h("p", { class: "hint" }, "Development server: any name signs you in."));
  const tokenPart = h("div", { class: "field", hidden: true }, h("label", { for: "login-token" }, "Access token"), tokenBox, h("p", { class: "hint" }, "This server has no open sign-in. Ask an administrator for a token (", h("code", null, "parleyd token <name>"), ") and paste it here."));
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in");
  const form = h("form", { class: "login card", "aria-labelledby": "login-title" }, h("h1", { id: "login-title" }, "Sign in to Parley"), devPart, tokenPart, error, submit);
  const useToken = () => {
    devPart.hidden = true;
    name.required = false;
    tokenPart.hidden = false;
    tokenBox.required = true;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      if (!tokenPart.hidden) await loginWithToken(tokenBox.value.trim());
      else await devLogin(name.value.trim(), useToken);
    } catch (err) {
      error.textContent = messageOf(err);
    } finally {
      submit.disabled = false;
    }
  });
  root.replaceChildren(h("div", { class: "login-page" }, form));
  // Ask the server whether it has dev login: an empty name is refused with
  // INVALID_ARGUMENT by a --dev server and PERMISSION_DENIED by the others.
  api.devLogin({ user: "" }).catch((err) => {
    if (codeOf(err) === Code.PermissionDenied) useToken();
  });
}

async function devLogin(user: string, useToken: () => void): Promise<void> {
  try {
    const resp = await api.devLogin({ user });
    signIn(resp.token, user);
  } catch (err) {
    if (codeOf(err) === Code.PermissionDenied) {
      useToken();
      throw new Error("This server has no dev login: paste a token instead.");
    }
    throw err;
  }
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
