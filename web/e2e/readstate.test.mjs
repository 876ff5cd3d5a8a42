// End to end: read state from the server. Two browsers of alice (a laptop
// and a phone, say) and one of bob: bob's messages show as unread and as
// mentions in both of alice's, reading the room in one clears the other,
// the "new messages" divider sits at alice's marker, and bob sees alice's
// "seen by" under the last message she read.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { artifacts, browser, restClient, send, signIn, startParleyd } from "./harness.mjs";

let server;
const people = {};

before(async () => {
  server = await startParleyd("parleyd-readstate", ["--send-rate", "-1"]);
});

after(async () => {
  for (const p of Object.values(people)) await p.ctx.close().catch(() => {});
  await server?.stop();
});

function item(page, room) {
  return page.locator(`[data-testid="room-item"][data-room="${room}"]`);
}

function row(page, body) {
  return page.getByTestId("message").filter({ has: page.getByTestId("message-body").filter({ hasText: body }) });
}

async function openRoom(page, room) {
  await item(page, room).click();
  await page.getByTestId("room-title").filter({ hasText: room }).waitFor();
}

test("read state: badges from the server, synced between tabs, divider and seen-by", { timeout: 120000 }, async (t) => {
  const carol = await restClient(server.url, "carol");
  await carol.createRoom("home");
  await carol.createRoom("reads");
  await carol.send("reads", "before alice came", "c1");

  const a1 = (people.a1 = await browser("rs-alice-1"));
  const a2 = (people.a2 = await browser("rs-alice-2"));
  const b = (people.b = await browser("rs-bob"));
  const [A1, A2, B] = [a1.page, a2.page, b.page];
  await signIn(A1, server.url, "alice");
  await signIn(A2, server.url, "alice");
  await signIn(B, server.url, "bob");

  // alice reads "reads" on her first browser, then goes elsewhere: her
  // marker is at carol's message.
  await openRoom(A1, "reads");
  await row(A1, "before alice came").waitFor();
  await openRoom(A1, "home");
  await openRoom(A2, "home");
  for (const p of [A1, A2]) await item(p, "reads").getByTestId("room-unread").waitFor({ state: "detached" });

  await openRoom(B, "reads");
  await row(B, "before alice came").waitFor();
  await send(B, "first new one");
  await send(B, "hey @alice, look at this");
  await send(B, "and a third");
  await row(B, "and a third").waitFor();

  await t.test("unread and mention badges show in both of alice's browsers", async () => {
    for (const p of [A1, A2]) {
      // A1 has joined the room and counts live; A2 has not and takes the list's counts.
      await item(p, "reads").locator('[data-testid="room-unread"]').filter({ hasText: /^3$/ }).waitFor({ timeout: 15000 });
      await item(p, "reads").locator('[data-testid="room-mentions"]').filter({ hasText: /^@1$/ }).waitFor({ timeout: 15000 });
    }
    // bob's own messages are not unread to him.
    assert.equal(await item(B, "reads").getByTestId("room-unread").count(), 0);
  });

  await t.test("reading in one browser clears the badge in the other within a second", async () => {
    await openRoom(A1, "reads");
    const divider = A1.getByTestId("new-divider");
    await divider.waitFor();
    const marked = Date.now();
    await item(A2, "reads").getByTestId("room-unread").waitFor({ state: "detached", timeout: 3000 });
    await item(A2, "reads").getByTestId("room-mentions").waitFor({ state: "detached", timeout: 1000 });
    const took = Date.now() - marked;
    t.diagnostic(`badge cleared in the other browser ${took} ms after the room was shown`);
    assert.ok(took <= 1000, `the other browser's badge took ${took} ms to clear`);
    await A1.screenshot({ path: join(artifacts, "readstate-divider.png") });
  });

  await t.test("the divider sits at the marker: before the first message after it", async () => {
    const seqs = await A1.getByTestId("messages").evaluate((box) => {
      const kids = [...box.querySelectorAll('[data-testid="new-divider"], [data-testid="message"]')];
      return kids.map((el) => (el.dataset.testid === "new-divider" ? "divider" : el.querySelector('[data-testid="message-body"]').textContent));
    });
    assert.deepEqual(seqs, ["before alice came", "divider", "first new one", "hey @alice, look at this", "and a third"]);
  });

  await t.test("alice's own mention is highlighted", async () => {
    const r = row(A1, "look at this");
    assert.equal(await r.getAttribute("data-mentions-me"), "");
    assert.equal(await r.getByTestId("mention").textContent(), "@alice");
    assert.equal(await row(A1, "and a third").getByTestId("mention").count(), 0);
    assert.equal(await row(B, "look at this").getByTestId("mention").count(), 0, "bob sees alice's mention highlighted as his");
  });

  await t.test("bob sees alice under the last message she read", async () => {
    const seen = B.locator('[data-testid="seen-by-user"][data-user="alice"]');
    // Her mark of a moment ago moves her there (receipts come at most once a second).
    await row(B, "and a third").locator('[data-testid="seen-by-user"][data-user="alice"]').waitFor({ timeout: 5000 });
    assert.equal(await seen.count(), 1);
    const under = B.getByTestId("message").filter({ has: seen });
    assert.equal(await under.getByTestId("message-body").textContent(), "and a third");
    // Never oneself.
    assert.equal(await B.locator('[data-testid="seen-by-user"][data-user="bob"]').count(), 0);
    await B.screenshot({ path: join(artifacts, "readstate-seen-by.png") });
  });

  await t.test("a long unread run opens at the bottom with a jump to the first unread", async () => {
    // Both of alice's browsers elsewhere: one showing the room would read it.
    await openRoom(A1, "home");
    await openRoom(A2, "home");
    for (let i = 1; i <= 40; i++) await carol.send("reads", `backlog ${i}`, `backlog-${i}`);
    await item(A2, "reads").locator('[data-testid="room-unread"]').filter({ hasText: /^40$/ }).waitFor({ timeout: 15000 });
    await openRoom(A2, "reads");
    await row(A2, "backlog 40").waitFor();
    const jump = A2.getByTestId("jump-unread");
    await jump.waitFor({ state: "visible" });
    await jump.click();
    const divider = A2.getByTestId("new-divider");
    await divider.waitFor();
    await A2.waitForFunction(() => {
      const box = document.querySelector('[data-testid="messages"]').getBoundingClientRect();
      const d = document.querySelector('[data-testid="new-divider"]').getBoundingClientRect();
      return d.top >= box.top && d.bottom <= box.bottom;
    });
    const next = await divider.evaluate((d) => {
      let el = d.nextElementSibling;
      while (el && !el.querySelector('[data-testid="message-body"]')) el = el.nextElementSibling;
      return el?.querySelector('[data-testid="message-body"]').textContent;
    });
    assert.equal(next, "backlog 1");
    await jump.waitFor({ state: "hidden" });
  });

  // The room stays read after a reload: the marker is the server's.
  await openRoom(A2, "home");
  await A2.reload();
  await A2.locator('[data-testid="conn-state"][data-state="online"]').waitFor();
  await item(A2, "reads").waitFor();
  await A2.waitForFunction(() => !document.querySelector('[data-testid="room-item"][data-room="reads"] [data-testid="room-unread"]'));
  for (const p of [a1, a2, b]) assert.deepEqual(p.errors, []);
});
