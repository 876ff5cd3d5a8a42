// Helpers for the browser tests: the real parleyd binary, Debian's chromium
// driven by playwright-core, and a place for screenshots and logs.
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const chromiumPath = process.env.PARLEY_CHROMIUM || "/usr/bin/chromium";

/** artifacts is the directory for screenshots and server logs. */
export const artifacts = process.env.PARLEY_ARTIFACTS || mkdtempSync(join(tmpdir(), "parley-e2e-"));
mkdirSync(artifacts, { recursive: true });

const scratch = mkdtempSync(join(tmpdir(), "parley-e2e-scratch-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

/**
 * startParleyd runs the binary from PARLEYD_BIN with --dev on a free loopback
 * port and resolves once it logs its address.
 */
export async function startParleyd(name, extraArgs = [], { dev = true } = {}) {
  const bin = parleydBin();
  const dataDir = mkdtempSync(join(scratch, `${name}-data-`));
  const args = [...(dev ? ["--dev"] : []), "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-format", "json", "--shutdown-timeout", "5s", ...extraArgs];
  const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  const log = createWriteStream(join(artifacts, `${name}.log`));
  const lines = createInterface({ input: proc.stderr });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: parleyd did not log its address within 20s`)), 20000);
    proc.on("exit", (code) => reject(new Error(`${name}: parleyd exited (${code}) before listening; see ${name}.log`)));
    lines.on("line", (line) => {
      log.write(line + "\n");
      try {
        const rec = JSON.parse(line);
        if (rec.msg === "parleyd listening" && rec.addr) {
          clearTimeout(timer);
          resolve(rec.addr);
        }
      } catch {
        // not JSON: keep it in the log only
      }
    });
  });
  return {
    addr,
    dataDir,
    url: `http://${addr}`,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((resolve) => proc.once("exit", resolve));
      proc.kill("SIGTERM");
      await exited;
      log.end();
    },
  };
}

/** parleydBin is the binary under test. */
export function parleydBin() {
  const bin = process.env.PARLEYD_BIN;
  if (!bin) throw new Error("PARLEYD_BIN is not set: run this through `go test ./web` or point it at a parleyd binary");
  return bin;
}

/** restClient signs user in through the REST dev login and returns a client that creates rooms and posts. */
export async function restClient(url, user) {
  const login = await fetch(`${url}/v1/dev/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  if (!login.ok) throw new Error(`dev login for ${user}: ${login.status} ${await login.text()}`);
  const { token } = await login.json();
  return {
    async createRoom(name) {
      const res = await fetch(`${url}/v1/rooms`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name }) });
      if (!res.ok) throw new Error(`create room ${name}: ${res.status} ${await res.text()}`);
    },
    async send(room, body, clientMsgId) {
      const res = await fetch(`${url}/v1/rooms/${encodeURIComponent(room)}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ body, clientMsgId }),
      });
      if (!res.ok) throw new Error(`send to ${room}: ${res.status} ${await res.text()}`);
    },
    async sendTo(toUser, body, clientMsgId) {
      const res = await fetch(`${url}/v1/users/${encodeURIComponent(toUser)}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ body, clientMsgId }),
      });
      if (!res.ok) throw new Error(`send to user ${toUser}: ${res.status} ${await res.text()}`);
    },
    /** presence returns the users online in a room, sorted. */
    async presence(room) {
      const res = await fetch(`${url}/v1/rooms/${encodeURIComponent(room)}/presence`, { headers: { authorization: `Bearer ${token}` } });
      if (!res.ok) throw new Error(`presence of ${room}: ${res.status} ${await res.text()}`);
      const { presence = [] } = await res.json();
      return presence.map((p) => p.user).sort();
    },
  };
}

const chromiumArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** browser opens a persistent Chromium context of its own, as one person would. */
export async function browser(name, options = {}) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(scratch, `${name}-profile-`)), {
    executablePath: chromiumPath,
    args: chromiumArgs,
    viewport: { width: 1200, height: 760 },
    ...options,
  });
  const errors = [];
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  watch(page, name, errors);
  ctx.on("page", (p) => watch(p, name, errors));
  return { ctx, page, errors };
}

function watch(page, name, errors) {
  page.on("pageerror", (err) => errors.push(`${name}: ${err.message}`));
  page.on("console", (msg) => {
    if (process.env.PARLEY_E2E_VERBOSE) console.log(`[${name} console.${msg.type()}] ${msg.text()}`);
  });
}

/** signIn signs a page in through dev login and waits for the live connection. */
export async function signIn(page, url, user) {
  await page.goto(url + "/");
  await page.getByTestId("login-name").fill(user);
  await page.getByTestId("login-submit").click();
  await waitOnline(page);
}

/** waitOnline waits until the page says its Join stream is up. */
export async function waitOnline(page, timeout = 20000) {
  await page.locator('[data-testid="conn-state"][data-state="online"]').waitFor({ timeout });
}

/** messages returns the messages shown in the open room, in page order. */
export async function messages(page) {
  return page.getByTestId("message").evaluateAll((els) =>
    els.map((el) => ({ seq: Number(el.dataset.seq), sender: el.dataset.sender, body: el.querySelector('[data-testid="message-body"]').textContent })),
  );
}

/** send types a message into the composer and presses Enter. */
export async function send(page, body) {
  await page.getByTestId("composer-input").fill(body);
  await page.getByTestId("composer-input").press("Enter");
}

/** box is an element's bounding box in the viewport, or null when it is not shown. */
export async function box(locator) {
  if ((await locator.count()) === 0 || !(await locator.first().isVisible())) return null;
  return locator.first().boundingBox();
}

/** overlap tells whether two boxes share any area; a missing box shares none. */
export function overlap(a, b) {
  return !!a && !!b && a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/** reachable tells whether a tap at the middle of the element lands on it, not on something drawn over it. */
export async function reachable(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return r.width > 0 && r.height > 0 && !!hit && el.contains(hit);
  });
}
