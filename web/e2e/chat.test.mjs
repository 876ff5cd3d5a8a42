// End to end: real parleyd, real Chromium, three people chatting.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { artifacts, browser, messages, restClient, send, signIn, startParleyd, waitOnline } from "./harness.mjs";

let server;
const people = {};

before(async () => {
  console.log(`artifacts (screenshots, server logs): ${artifacts}`);
  server = await startParleyd("parleyd");
});

after(async () => {
  for (const p of Object.values(people)) await p.ctx.close().catch(() => {});
  await server?.stop();
});

// bodies of the open room's messages that start with prefix.
async function bodies(page, prefix) {
  return (await messages(page)).map((m) => m.body).filter((b) => b.startsWith(prefix));
}

// assertNoDuplicates checks that no seq is shown twice and that seqs rise.
async function assertNoDuplicates(page, who) {
  const seqs = (await messages(page)).map((m) => m.seq);
  assert.equal(new Set(seqs).size, seqs.length, `${who} shows a message twice: ${seqs}`);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${who} shows messages out of order: ${seqs}`);
}

function presenceUser(page, user) {
  return page.locator(`[data-testid="presence-user"][data-user="${user}"]`);
}

test("two people chat: presence, live messages, typing, reload, offline resume, private conversation", { timeout: 240000 }, async (t) => {
  // A's WebSocket goes through this route so that the test can cut it: while
  // aOffline is set, new WebSockets are refused too.
  let aOffline = false;
  const aSockets = [];
  const alice = (people.alice = await browser("alice"));
  await alice.ctx.routeWebSocket(/\/parley\.v1\.ChatService\/Join$/, (ws) => {
    if (aOffline) {
      ws.close({ code: 1011, reason: "test: offline" });
      return;
    }
    aSockets.push({ ws, server: ws.connectToServer() });
  });
  const bob = (people.bob = await browser("bob"));
  const A = alice.page;
  const B = bob.page;

  await t.test("both sign in and see each other in the lobby's presence", async () => {
    await signIn(A, server.url, "alice");
    await signIn(B, server.url, "bob");
    await A.getByTestId("room-title").filter({ hasText: "lobby" }).waitFor();
    await presenceUser(A, "bob").waitFor();
    await presenceUser(B, "alice").waitFor();
    assert.equal(await presenceUser(A, "bob").getByTestId("presence-devices").textContent(), "1 device");
    // The room list counts both.
    await A.locator('[data-testid="room-item"][data-room="lobby"] [data-testid="room-online"]').filter({ hasText: "2" }).waitFor();
  });

  await t.test("a second device shows as a second meta, and goes away when closed", async () => {
    const second = await bob.ctx.newPage();
    await signIn(second, server.url, "bob");
    await presenceUser(A, "bob").getByTestId("presence-devices").filter({ hasText: "2 devices" }).waitFor();
    await second.close();
    await presenceUser(A, "bob").getByTestId("presence-devices").filter({ hasText: "1 device" }).waitFor({ timeout: 15000 });
  });

  await t.test("A sends, B sees it live", async () => {
    await send(A, "hello bob");
    await B.getByTestId("message").filter({ hasText: "hello bob" }).waitFor();
    const last = (await messages(B)).at(-1);
    assert.equal(last.sender, "alice");
    assert.equal(last.body, "hello bob");
  });

  await t.test("B types, A sees the typing indicator, which ends when B sends", async () => {
    await B.getByTestId("composer-input").pressSequentially("hi al", { delay: 20 });
    await A.getByTestId("typing").filter({ hasText: "bob is typing" }).waitFor();
    await B.getByTestId("composer-input").pressSequentially("ice!");
    await B.getByTestId("composer-input").press("Enter");
    await A.getByTestId("message").filter({ hasText: "hi alice!" }).waitFor();
    await A.getByTestId("typing").filter({ hasText: /^$/ }).waitFor();
  });

  await t.test("B reloads and sees the history once", async () => {
    await B.reload();
    await waitOnline(B);
    await B.getByTestId("message").filter({ hasText: "hi alice!" }).waitFor();
    const got = await messages(B);
    assert.deepEqual(got.map((m) => m.body), ["hello bob", "hi alice!"]);
    await assertNoDuplicates(B, "bob after reload");
  });

  await t.test("A is cut off, B sends 20, A comes back with all 20 exactly once, in order", async () => {
    await alice.ctx.setOffline(true);
    aOffline = true;
    for (const s of aSockets.splice(0)) {
      await s.server.close();
      await s.ws.close();
    }
    await A.locator('[data-testid="conn-state"]:not([data-state="online"])').waitFor();
    // The server saw the connection go: alice leaves bob's presence list.
    await presenceUser(B, "alice").waitFor({ state: "detached", timeout: 15000 });
    // A writes while offline: the message waits and goes out on reconnect.
    await send(A, "written while offline");
    await A.locator('[data-testid="pending-message"][data-state="sending"]').waitFor();
    try {
      for (let i = 1; i <= 20; i++) await send(B, `burst ${i}`);
      await B.waitForFunction(() => [...document.querySelectorAll('[data-testid="message-body"]')].filter((e) => e.textContent.startsWith("burst ")).length === 20);
      await B.locator('[data-testid="pending-message"]').waitFor({ state: "detached" });
    } finally {
      aOffline = false;
      await alice.ctx.setOffline(false);
    }
    await waitOnline(A);
    await A.waitForFunction(() => [...document.querySelectorAll('[data-testid="message-body"]')].filter((e) => e.textContent.startsWith("burst ")).length >= 20);
    await B.getByTestId("message").filter({ hasText: "written while offline" }).waitFor();
    await A.locator('[data-testid="pending-message"]').waitFor({ state: "detached" });
    assert.deepEqual(await bodies(A, "burst "), Array.from({ length: 20 }, (_, i) => `burst ${i + 1}`));
    assert.equal((await bodies(A, "written while offline")).length, 1);
    assert.equal((await bodies(B, "written while offline")).length, 1);
    await assertNoDuplicates(A, "alice after resume");
    await assertNoDuplicates(B, "bob after alice's resume");
    await presenceUser(B, "alice").waitFor();
  });

  await t.test("A starts a private conversation with B", async () => {
    await presenceUser(A, "bob").getByTestId("dm-start").click();
    await A.getByTestId("room-title").filter({ hasText: /^bob$/ }).waitFor();
    await send(A, "just between us");
    await A.locator('[data-testid="room-title"][data-room="dm:alice:bob"]').waitFor();
    await A.getByTestId("message").filter({ hasText: "just between us" }).waitFor();
    // B gets the conversation in the list (with an unread mark) and opens it.
    const item = B.locator('[data-testid="room-item"][data-room="dm:alice:bob"]');
    await item.getByTestId("room-unread").waitFor({ timeout: 20000 });
    await item.click();
    await B.getByTestId("room-title").filter({ hasText: /^alice$/ }).waitFor();
    await B.getByTestId("message").filter({ hasText: "just between us" }).waitFor();
    await send(B, "sure, alice");
    await A.getByTestId("message").filter({ hasText: "sure, alice" }).waitFor();
    await assertNoDuplicates(A, "alice in the DM");
    await A.screenshot({ path: join(artifacts, "alice-dm.png") });
  });

  await t.test("older history loads on scroll, page by page, each message once", async () => {
    await B.getByTestId("create-room-toggle").click();
    await B.getByTestId("create-room-name").fill("history");
    await B.getByTestId("create-room-submit").click();
    await B.locator('[data-testid="room-title"][data-room="history"]').waitFor();
    const dave = await restClient(server.url, "dave");
    for (let i = 1; i <= 90; i++) await dave.send("history", `old ${i}`, `old-${i}`);
    await B.getByTestId("message-body").filter({ hasText: /^old 90$/ }).waitFor();
    await A.locator('[data-testid="room-item"][data-room="history"]').click({ timeout: 20000 });
    await A.getByTestId("message-body").filter({ hasText: /^old 90$/ }).waitFor();
    await A.getByTestId("load-older").waitFor();
    const firstPage = await bodies(A, "old ");
    assert.ok(firstPage.length < 90, `the first page is one page, not everything: ${firstPage.length}`);
    await A.getByTestId("messages").evaluate((el) => (el.scrollTop = 0));
    await A.getByTestId("history-start").waitFor();
    assert.deepEqual(await bodies(A, "old "), Array.from({ length: 90 }, (_, i) => `old ${i + 1}`));
    await assertNoDuplicates(A, "alice after paging");
  });

  await t.test("a private room: its creator adds B, B writes, the creator removes B", async () => {
    await A.getByTestId("create-room-toggle").click();
    await A.getByTestId("create-room-name").fill("plans");
    await A.getByTestId("create-room-private").check();
    await A.getByTestId("create-room-submit").click();
    await A.locator('[data-testid="room-title"][data-room="plans"]').waitFor();
    await A.getByTestId("room-meta").filter({ hasText: "Private room" }).waitFor();
    await A.getByTestId("add-member-input").fill("bob");
    await A.getByTestId("add-member-submit").click();
    await A.locator('[data-testid="member"][data-user="bob"]').waitFor();
    await B.locator('[data-testid="room-item"][data-room="plans"]').click({ timeout: 20000 });
    await send(B, "count me in");
    await A.getByTestId("message-body").filter({ hasText: "count me in" }).waitFor();
    await A.screenshot({ path: join(artifacts, "alice-private.png") });
  });

  await t.test("C sees neither the private conversation nor the private room, and cannot join them", async () => {
    const carol = (people.carol = await browser("carol"));
    const C = carol.page;
    await signIn(C, server.url, "carol");
    await C.locator('[data-testid="room-item"][data-room="lobby"]').waitFor();
    await C.locator('[data-testid="room-item"][data-room="history"]').waitFor();
    for (const room of ["dm:alice:bob", "plans"]) {
      assert.equal(await C.locator(`[data-testid="room-item"][data-room="${room}"]`).count(), 0, `carol sees ${room}`);
      await C.evaluate((room) => (location.hash = "#/r/" + encodeURIComponent(room)), room);
      await C.locator(`[data-testid="room-title"][data-room="${room}"]`).waitFor();
      await C.getByTestId("room-error").filter({ hasText: "does not exist" }).waitFor();
      assert.equal(await C.getByTestId("message").count(), 0);
      assert.equal(await C.locator(`[data-testid="room-item"][data-room="${room}"]`).count(), 0, `carol sees ${room} after trying`);
    }
    await C.evaluate(() => (location.hash = "#/r/" + encodeURIComponent("dm:alice:bob")));
    await C.getByTestId("room-error").filter({ hasText: "dm:alice:bob" }).waitFor();
    await C.screenshot({ path: join(artifacts, "carol-denied.png") });
  });

  await t.test("removed from the private room, B is told so at once", async () => {
    await B.locator('[data-testid="room-item"][data-room="plans"]').click();
    await A.locator('[data-testid="member"][data-user="bob"]').getByTestId("remove-member").click();
    await B.getByTestId("room-error").filter({ hasText: "removed" }).waitFor();
    await B.locator('[data-testid="room-item"][data-room="plans"]').waitFor({ state: "detached" });
    await A.locator('[data-testid="member"][data-user="bob"]').waitFor({ state: "detached" });
  });

  await t.test("unread marks: B's lobby shows what A posted while B was elsewhere", async () => {
    await A.locator('[data-testid="room-item"][data-room="lobby"]').click();
    await send(A, "back in the lobby");
    await B.locator('[data-testid="room-item"][data-room="lobby"] [data-testid="room-unread"]').filter({ hasText: "1" }).waitFor();
  });

  await t.test("screenshots", async () => {
    await B.locator('[data-testid="room-item"][data-room="lobby"]').click();
    // The composer is disabled until the room is usable; keys typed before
    // that are dropped, so wait for it.
    await B.locator('[data-testid="composer-input"]:not([disabled])').waitFor();
    await B.getByTestId("composer-input").pressSequentially("typing something", { delay: 10 });
    await A.getByTestId("typing").filter({ hasText: "bob is typing" }).waitFor();
    await A.screenshot({ path: join(artifacts, "alice.png") });
    await B.screenshot({ path: join(artifacts, "bob.png") });
    await B.setViewportSize({ width: 390, height: 760 });
    await B.screenshot({ path: join(artifacts, "bob-narrow.png") });
    await B.getByTestId("toggle-rooms").click();
    await B.screenshot({ path: join(artifacts, "bob-narrow-rooms.png") });
    const login = await people.carol.ctx.newPage(); // a new tab: signed out
    await login.goto(server.url + "/");
    await login.getByTestId("login-name").waitFor();
    await login.screenshot({ path: join(artifacts, "login.png") });
    await login.close();
    console.log(`screenshots: ${artifacts}/{alice,alice-dm,alice-private,bob,bob-narrow,bob-narrow-rooms,carol-denied,login}.png`);
  });

  const errors = [...alice.errors, ...bob.errors, ...(people.carol?.errors ?? [])];
  assert.deepEqual(errors, [], "uncaught errors in the pages");
});

// The view redraws what changed: a change to one message touches that
// message's row alone, a new message leaves the other rows' nodes in place
// (so hover and focus on them survive), and the composer keeps its draft.
test("one message's change redraws that message alone, and a new one keeps the others' nodes", { timeout: 120000 }, async () => {
  const dora = (people.dora = await browser("dora"));
  const P = dora.page;
  await P.addInitScript(() => (window.parleyPerf = {}));
  const eve = await restClient(server.url, "eve");
  await eve.createRoom("redraw");
  for (let i = 1; i <= 30; i++) await eve.send("redraw", `line ${i}`, `redraw-${i}`);
  await signIn(P, server.url, "dora");
  await P.evaluate(() => (location.hash = "#/r/redraw"));
  await P.getByTestId("message-body").filter({ hasText: /^line 30$/ }).waitFor();
  await P.locator('[data-testid="composer-input"]:not([disabled])').fill("a draft");

  // Rows are marked; a MutationObserver lists every node that changes.
  await P.evaluate(() => {
    const box = document.querySelector('[data-testid="messages"]');
    window.rows = [...box.querySelectorAll('[data-testid="message"]')];
    window.mutated = [];
    window.observer = new MutationObserver((recs) => window.mutated.push(...recs.map((r) => r.target)));
    window.observer.observe(box, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const seq = await P.evaluate(() => {
    const seq = Number(window.rows[10].dataset.seq);
    window.parleyPerf.chat.rooms.get("redraw").update(seq, { body: "line 11, changed" });
    window.parleyPerf.flush();
    return seq;
  });
  await P.locator(`[data-testid="message"][data-seq="${seq}"] [data-testid="message-body"]`).filter({ hasText: "line 11, changed" }).waitFor();
  // Two frames more, for any redraw batched per frame to have happened.
  await P.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  const afterChange = await P.evaluate(() => {
    const row = window.rows[10];
    const res = { outside: window.mutated.filter((n) => !row.contains(n)).length, inside: window.mutated.length, kept: window.rows.filter((r) => r.isConnected).length };
    window.mutated = [];
    return res;
  });
  assert.ok(afterChange.inside > 0, "the change was seen");
  assert.equal(afterChange.outside, 0, "a change to one message touched nodes outside its row");
  assert.equal(afterChange.kept, 30, "rows were replaced for a change to one message");

  await eve.send("redraw", "line 31", "redraw-31");
  await P.getByTestId("message-body").filter({ hasText: /^line 31$/ }).waitFor();
  await P.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  const afterNew = await P.evaluate(() => {
    window.observer.disconnect();
    return { kept: window.rows.filter((r) => r.isConnected).length, touched: window.rows.filter((row) => window.mutated.some((n) => row.contains(n))).length };
  });
  assert.equal(afterNew.kept, 30, "rows were replaced for one new message");
  assert.equal(afterNew.touched, 0, "one new message touched the other rows");
  assert.equal(await P.getByTestId("composer-input").inputValue(), "a draft", "the draft was lost");
  assert.deepEqual(dora.errors, [], "uncaught errors in the page");
});
