// End to end: the room list stays current from live events, without
// polling. alice has one room open; the others' badges move as messages
// come (within a second), mentions count apart, her own messages do not
// count, rooms that become visible (a new public room, a direct
// conversation) show up, she is not in the presence of the rooms she only
// follows, and the page calls ListRooms at start and when the set of rooms
// changes, never on a timer.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { artifacts, browser, restClient, signIn, startParleyd } from "./harness.mjs";

let server;
const people = {};

before(async () => {
  server = await startParleyd("parleyd-roomlist", ["--send-rate", "-1"]);
});

after(async () => {
  for (const p of Object.values(people)) await p.ctx.close().catch(() => {});
  await server?.stop();
});

function item(page, room) {
  return page.locator(`[data-testid="room-item"][data-room="${room}"]`);
}

// badge waits for a room's badge (room-unread or room-mentions) to read
// text, and returns how long after since it took.
async function badge(page, room, which, text, since, timeout = 5000) {
  await item(page, room).locator(`[data-testid="${which}"]`).filter({ hasText: new RegExp(`^${text}$`) }).waitFor({ timeout });
  return Date.now() - since;
}

test("room list: live badges, new rooms, no polling", { timeout: 120000 }, async (t) => {
  const carol = await restClient(server.url, "carol");
  const bob = await restClient(server.url, "bob");
  const me = await restClient(server.url, "alice"); // alice's other device
  await carol.createRoom("home");
  await carol.createRoom("side");
  await carol.send("side", "before alice came", "s0");

  const a = (people.a = await browser("rl-alice"));
  const A = a.page;
  // Every ListRooms the page makes, with when.
  const lists = [];
  A.on("request", (req) => {
    if (req.url().endsWith("/parley.v1.ChatService/ListRooms")) lists.push(Date.now());
  });
  await signIn(A, server.url, "alice");
  await item(A, "home").click();
  await A.getByTestId("room-title").filter({ hasText: "home" }).waitFor();
  await badge(A, "side", "room-unread", "1", Date.now());

  await t.test("a message in a room not open shows in its badge within a second", async () => {
    for (const [n, body] of [
      [2, "one more"],
      [3, "and another"],
    ]) {
      const sent = Date.now();
      await carol.send("side", body, `side-${n}`);
      const took = await badge(A, "side", "room-unread", String(n), sent);
      t.diagnostic(`badge ${n} ${took} ms after the send was acknowledged`);
      assert.ok(took <= 1000, `the badge took ${took} ms`);
    }
  });

  await t.test("a mention bumps the mention badge; alice's own messages do not count", async () => {
    let sent = Date.now();
    await carol.send("side", "@alice have a look", "side-m1");
    let took = await badge(A, "side", "room-mentions", "@1", sent);
    assert.ok(took <= 1000, `the mention badge took ${took} ms`);
    await badge(A, "side", "room-unread", "4", sent);
    // alice writes from her other device, then carol mentions her again:
    // once the second mention shows, both were counted or not.
    await me.send("side", "mine, already read", "side-own");
    sent = Date.now();
    await carol.send("side", "@alice again", "side-m2");
    took = await badge(A, "side", "room-mentions", "@2", sent);
    assert.ok(took <= 1000, `the second mention took ${took} ms`);
    assert.equal(await item(A, "side").getByTestId("room-unread").textContent(), "5", "alice's own message counted as unread");
  });

  await t.test("alice is not in the presence of a room she only follows", async () => {
    assert.deepEqual(await carol.presence("side"), []);
    assert.deepEqual(await carol.presence("home"), ["alice"]);
  });

  await t.test("a new direct conversation shows up without polling", async () => {
    let sent = Date.now();
    await bob.sendTo("alice", "hi alice, it's bob", "dm-1");
    let took = await badge(A, "dm:alice:bob", "room-unread", "1", sent, 5000);
    t.diagnostic(`bob's new conversation showed ${took} ms after his send`);
    assert.ok(took <= 2500, `the new conversation took ${took} ms to show`);
    // A direct message counts as a mention.
    await badge(A, "dm:alice:bob", "room-mentions", "@1", sent);
    sent = Date.now();
    await bob.send("dm:alice:bob", "and a second", "dm-2");
    took = await badge(A, "dm:alice:bob", "room-unread", "2", sent);
    assert.ok(took <= 1000, `the conversation's second message took ${took} ms`);
  });

  await t.test("no ListRooms on a timer", async () => {
    // Watch the page for well over the 5 s the app used to poll at while
    // the other rooms are busy: their badges move, and nothing is listed.
    const from = lists.length;
    const start = Date.now();
    for (let i = 6; Date.now() - start < 7000; i++) {
      await carol.send("side", `busy ${i}`, `side-busy-${i}`);
      await badge(A, "side", "room-unread", String(i), Date.now());
      // The time between sends is the watch itself, not a wait for something.
      await A.waitForTimeout(500);
    }
    const during = lists.slice(from).map((at) => at - start);
    assert.deepEqual(during, [], `ListRooms was called ${during.length} times in ${Date.now() - start} ms, at ${during.join(", ")} ms`);
  });

  await t.test("a new public room shows up without polling", async () => {
    const sent = Date.now();
    await bob.createRoom("brand-new");
    await item(A, "brand-new").waitFor({ timeout: 5000 });
    const took = Date.now() - sent;
    t.diagnostic(`the new public room showed ${took} ms after it was created`);
    assert.ok(took <= 2500, `the new room took ${took} ms to show`);
    await bob.send("brand-new", "first in the new room", "bn-1");
    await badge(A, "brand-new", "room-unread", "1", sent);
    await A.screenshot({ path: join(artifacts, "roomlist.png") });
  });

  await t.test("opening a followed room reads it and shows alice in its presence", async () => {
    await item(A, "side").click();
    await A.getByTestId("message-body").filter({ hasText: "@alice again" }).waitFor();
    await item(A, "side").getByTestId("room-unread").waitFor({ state: "detached" });
    await A.locator('[data-testid="presence-user"][data-user="alice"]').waitFor();
    assert.deepEqual(await carol.presence("side"), ["alice"]);
    // Leaving it follows it again, out of its presence, and counts anew.
    await A.getByTestId("leave-room").click();
    const deadline = Date.now() + 5000;
    while ((await carol.presence("side")).length && Date.now() < deadline) await A.waitForTimeout(50);
    assert.deepEqual(await carol.presence("side"), []);
    await item(A, "home").click();
    const sent = Date.now();
    await carol.send("side", "after she left", "side-after");
    const took = await badge(A, "side", "room-unread", "1", sent);
    assert.ok(took <= 1000, `the left room's badge took ${took} ms`);
  });

  t.diagnostic(`ListRooms calls in all: ${lists.length}`);
  assert.deepEqual(a.errors, []);
});
