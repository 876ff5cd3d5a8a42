// End to end: a send refused for the send rate is sent again when the
// server's reply says (retry_after), not on a fixed timer.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { browser, send, signIn, startParleyd } from "./harness.mjs";

// One message every 2 s per user, no burst above it: a second message sent
// right after a first is refused with retry_after ≈ 2 s.
const intervalMs = 2000;

let server;
let person;

before(async () => {
  server = await startParleyd("parleyd-ratelimit", ["--send-rate", String(1000 / intervalMs), "--send-burst", "1"]);
});

after(async () => {
  await person?.ctx.close().catch(() => {});
  await server?.stop();
});

test("a send refused for the rate goes again after the reply's retry_after, once", { timeout: 60000 }, async () => {
  person = await browser("rita");
  const { ctx, page, errors } = person;
  // Every frame the page sends on its Join WebSocket passes here, so the
  // test sees when each attempt at a message left the page.
  const attempts = new Map();
  await ctx.routeWebSocket(/\/parley\.v1\.ChatService\/Join$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      const bytes = Buffer.from(m);
      for (const body of ["rate one", "rate two"]) {
        if (bytes.includes(body)) attempts.set(body, [...(attempts.get(body) ?? []), performance.now()]);
      }
      server.send(m);
    });
  });
  await signIn(page, server.url, "rita");
  await page.locator('[data-testid="composer-input"]:not([disabled])').waitFor();
  await send(page, "rate one");
  await send(page, "rate two");
  await page.getByTestId("message").filter({ hasText: "rate two" }).waitFor({ timeout: 20000 });
  await page.locator('[data-testid="pending-message"]').waitFor({ state: "detached" });
  assert.equal(attempts.get("rate one")?.length, 1, "the first message is sent once");
  const two = attempts.get("rate two") ?? [];
  assert.equal(two.length, 2, `the second message is refused once and sent again once, not polled: attempts at ${two.map((t) => Math.round(t - two[0]))} ms`);
  const waited = two[1] - two[0];
  // The server asked for about intervalMs (less the moment between the two
  // sends); a busy machine may add to the wait, never take from it.
  assert.ok(waited >= intervalMs * 0.75, `the retry came ${Math.round(waited)} ms after the refused send, before the server's retry_after (~${intervalMs} ms)`);
  assert.ok(waited < intervalMs + 5000, `the retry came ${Math.round(waited)} ms after the refused send, long after the server's retry_after (~${intervalMs} ms)`);
  assert.deepEqual(errors, [], "uncaught errors in the page");
});
