// Measures the web app (not a test: `npm run perf`, see README.md): the
// bundle's size, and in Chromium, with a room showing 1,000 messages, the
// time from changing one message (as an edit or a reaction will) until the
// page shows it, and the time to show one new message arriving.
//
// The time is performance.now() in the page from the state change to the
// first DOM mutation that shows it, plus the style and layout that the
// change costs (forced by reading the list's height). A view that batches
// redraws per animation frame is told to draw at once (parleyPerf.flush),
// so the wait for the frame is not counted: only the work is.
//
//   PARLEYD_BIN=/tmp/parleyd node e2e/perf-redraw.mjs [--reps 300]
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { browser, restClient, signIn, startParleyd } from "./harness.mjs";

const here = new URL("..", import.meta.url).pathname;
const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const reps = arg("--reps", 300);
const total = 1000;
const room = "perf";

function bundle() {
  const dir = join(here, "dist/assets");
  const out = {};
  for (const f of readdirSync(dir)) {
    const b = readFileSync(join(dir, f));
    out[f.endsWith(".js") ? "js" : "css"] = { file: f, raw: b.length, gzip: gzipSync(b, { level: 9 }).length };
  }
  return out;
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, median: q(0.5), p95: q(0.95), max: s.at(-1) };
}

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const ms = (n) => `${n.toFixed(2)} ms`;

const b = bundle();
console.log(`bundle: js ${b.js.file} ${kib(b.js.raw)} (gzip ${kib(b.js.gzip)}), css ${kib(b.css.raw)} (gzip ${kib(b.css.gzip)})`);

const server = await startParleyd("parleyd-perf", ["--send-rate", "-1"]);
let person;
try {
  // 1,000 messages from four people, in runs of one to five, some long.
  const senders = ["ann", "ben", "cat", "dan"];
  const clients = await Promise.all(senders.map((s) => restClient(server.url, s)));
  await clients[0].createRoom(room);
  let n = 0;
  let who = 0;
  while (n < total) {
    const run = 1 + (n % 5);
    for (let i = 0; i < run && n < total; i++, n++) {
      const body = n % 7 === 0 ? `message ${n}: ${"a longer line of text that wraps ".repeat(4)}` : `message ${n}`;
      await clients[who].send(room, body, `perf-${n}`);
    }
    who = (who + 1) % senders.length;
  }

  console.log(`seeded ${total} messages; loading them in Chromium`);
  person = await browser("perf", { viewport: { width: 1200, height: 760 } });
  const { page, errors } = person;
  await page.addInitScript(() => (window.parleyPerf = {}));
  await signIn(page, server.url, "perf");
  await page.evaluate((room) => (location.hash = "#/r/" + room), room);
  await page.locator(`[data-testid="room-title"][data-room="${room}"]`).waitFor();
  await page.waitForFunction(() => window.parleyPerf.chat?.rooms.get("perf")?.historyLoaded);
  // Every page of history, through the app's own paging.
  await page.evaluate(async (room) => {
    const chat = window.parleyPerf.chat;
    const r = chat.rooms.get(room);
    // A page the app asked for itself (on scroll) is waited for, not asked twice.
    while (!r.atBeginning) {
      if (r.loadingOlder) await new Promise((resolve) => setTimeout(resolve, 20));
      else await chat.loadOlder(room);
    }
  }, room);
  await page.waitForFunction((total) => document.querySelectorAll('[data-testid="message"]').length === total, total, { timeout: 60000 });
  // Scrolled to the middle, where a reaction would be clicked.
  await page.getByTestId("messages").evaluate((el) => (el.scrollTop = el.scrollHeight / 2));

  console.log(`${total} messages shown; timing`);
  const result = await page.evaluate(
    async ({ room, reps, total }) => {
      const { chat, flush } = window.parleyPerf;
      const r = chat.rooms.get(room);
      const box = document.querySelector('[data-testid="messages"]');
      const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
      // timed applies change and resolves with the time until shown() holds
      // in the DOM, style and layout included.
      const timed = (change, shown) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("the change was not shown within 5s")), 5000);
          const mo = new MutationObserver(() => {
            if (!shown()) return;
            void box.scrollHeight;
            const t = performance.now() - t0;
            mo.disconnect();
            clearTimeout(timer);
            resolve(t);
          });
          mo.observe(box, { subtree: true, childList: true, characterData: true, attributes: true });
          const t0 = performance.now();
          change();
          flush();
        });
      const bodyOf = (seq) => box.querySelector(`[data-seq="${seq}"] [data-testid="message-body"]`)?.textContent;
      const seqs = r.messages().map((m) => m.seq);
      const change = [];
      for (let i = 0; i < reps; i++) {
        await frame();
        await frame();
        const seq = seqs[Math.floor(seqs.length / 4 + ((i * 7919) % (seqs.length / 2)))];
        const body = `changed ${i}`;
        change.push(await timed(() => r.update(seq, { body }), () => bodyOf(seq) === body));
      }
      const append = [];
      let seq = r.lastSeq;
      for (let i = 0; i < Math.min(reps, 100); i++) {
        await frame();
        await frame();
        seq++;
        const s = seq;
        const value = { room, seq: BigInt(s), sender: i % 3 ? "ann" : "ben", body: `arrived ${i}`, clientMsgId: "" };
        append.push(await timed(() => chat.onEvent({ case: "message", value }), () => bodyOf(s) === value.body));
      }
      return { change, append, shown: document.querySelectorAll('[data-testid="message"]').length, total };
    },
    { room, reps, total },
  );
  if (errors.length) throw new Error(`errors in the page: ${errors.join("; ")}`);
  const c = stats(result.change);
  const a = stats(result.append);
  console.log(`change one message of ${total} shown: median ${ms(c.median)}, p95 ${ms(c.p95)}, max ${ms(c.max)} (n=${c.n})`);
  console.log(`one new message at ${total}-${result.shown} shown: median ${ms(a.median)}, p95 ${ms(a.p95)}, max ${ms(a.max)} (n=${a.n})`);
} finally {
  await person?.ctx.close().catch(() => {});
  await server.stop();
}
