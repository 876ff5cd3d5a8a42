// End to end on a phone-sized screen (390 × 844, touch) and on a desktop:
// the rooms and people drawers, and where a message's time shows on hover.
// What is checked is geometry (boxes, and what a tap at a point would hit);
// screenshots of each state go to the artifacts directory.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { artifacts, box, browser, overlap, reachable, restClient, send, signIn, startParleyd } from "./harness.mjs";

const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: "en-US" };
const desktop = { viewport: { width: 1200, height: 760 }, locale: "en-US" };
const rooms = ["design", "general", "random", "support", "watercooler"];

let server;
const people = [];

before(async () => {
  console.log(`artifacts (screenshots, server logs): ${artifacts}`);
  server = await startParleyd("parleyd-mobile");
  const admin = await restClient(server.url, "admin");
  for (const r of rooms) await admin.createRoom(r);
});

after(async () => {
  for (const p of people) await p.ctx.close().catch(() => {});
  await server?.stop();
});

async function open(name, options) {
  const b = await browser(name, options);
  people.push(b);
  return b;
}

// hoverTimes hovers each of the two messages of pat's group and returns,
// for each, the times shown in the group, the avatar's box and the room's.
async function hoverTimes(page, bodies) {
  const group = page.getByTestId("message-group").filter({ has: page.getByTestId("message-body").filter({ hasText: bodies[1] }) });
  const out = [];
  for (const body of bodies) {
    await page.getByTestId("message").filter({ hasText: body }).hover();
    const shown = await group.evaluate((g) =>
      [...g.querySelectorAll("time")]
        .filter((t) => {
          const cs = getComputedStyle(t);
          return cs.display !== "none" && cs.visibility !== "hidden" && Number(cs.opacity) > 0;
        })
        .map((t) => {
          const r = t.getBoundingClientRect();
          const cs = getComputedStyle(t);
          return { text: t.textContent, inMessage: !!t.closest('[data-testid="message"]'), x: r.x, y: r.y, width: r.width, height: r.height, lineHeight: parseFloat(cs.lineHeight) || parseFloat(cs.fontSize) * 1.5 };
        }),
    );
    out.push({ body, shown, avatar: await group.locator(".avatar").first().boundingBox(), room: await page.getByTestId("messages").boundingBox() });
  }
  return out;
}

// checkHoverTimes: hovering the first message of a group shows its time
// (in the group's head) and hovering the second shows the second's; no time
// is drawn over the avatar, wraps, or runs out of the room's pane.
function checkHoverTimes(size, hovered) {
  const [first, second] = hovered;
  assert.ok(first.shown.length >= 1, `${size}: hovering the first message shows no time`);
  assert.ok(second.shown.some((t) => t.inMessage), `${size}: hovering the second message shows no time of its own`);
  for (const { body, shown, avatar, room } of hovered) {
    for (const t of shown) {
      const what = `${size}, hovering "${body}": the time "${t.text}" at ${JSON.stringify(t)}`;
      assert.ok(!overlap(t, avatar), `${what} is drawn over the avatar at ${JSON.stringify(avatar)}`);
      assert.ok(t.height <= t.lineHeight * 1.3, `${what} takes more than one line (line height ${t.lineHeight})`);
      assert.ok(t.x >= room.x && t.x + t.width <= room.x + room.width, `${what} runs out of the room's pane ${JSON.stringify(room)}`);
    }
  }
}

test("a message's time on hover stays off the avatar and on one line, on a desktop and on a phone", { timeout: 120000 }, async () => {
  const bodies = ["first of a group", "second of a group"];
  const d = await open("pat-desktop", desktop);
  await signIn(d.page, server.url, "pat");
  await d.page.locator('[data-testid="composer-input"]:not([disabled])').waitFor();
  for (const b of bodies) {
    await send(d.page, b);
    await d.page.getByTestId("message").filter({ hasText: b }).waitFor();
  }
  const onDesktop = await hoverTimes(d.page, bodies);
  await d.page.screenshot({ path: join(artifacts, "desktop-hover-time.png") });
  checkHoverTimes("desktop", onDesktop);

  const p = await open("pat-phone", phone);
  await signIn(p.page, server.url, "pat");
  await p.page.getByTestId("message").filter({ hasText: bodies[1] }).waitFor();
  const onPhone = await hoverTimes(p.page, bodies);
  await p.page.screenshot({ path: join(artifacts, "phone-hover-time.png") });
  checkHoverTimes("phone", onPhone);
  assert.deepEqual([...d.errors, ...p.errors], [], "uncaught errors in the pages");
});

test("on a phone, the rooms and people drawers open one at a time and close on Escape, a tap outside and their button", { timeout: 120000 }, async () => {
  const { page: P, errors } = await open("quinn-phone", phone);
  await signIn(P, server.url, "quinn");
  await P.locator('[data-testid="room-title"][data-room="lobby"]').waitFor();
  const roomsButton = P.getByTestId("toggle-rooms");
  const peopleButton = P.getByTestId("toggle-people");
  const roomsDrawer = P.locator("nav.sidebar");
  const peopleDrawer = P.locator("aside.people");
  const closePeople = P.getByTestId("close-people");
  const viewport = P.viewportSize();

  // shown waits until exactly the drawer named is open ("" for none).
  const shown = async (which, why) => {
    await (which === "rooms" ? roomsDrawer : peopleDrawer).waitFor({ state: which ? "visible" : "hidden" });
    await (which === "rooms" ? peopleDrawer : roomsDrawer).waitFor({ state: "hidden" });
    if (!which) await roomsDrawer.waitFor({ state: "hidden" });
    const open = [(await roomsDrawer.isVisible()) && "rooms", (await peopleDrawer.isVisible()) && "people"].filter(Boolean);
    assert.deepEqual(open, which ? [which] : [], `${why}: open drawers`);
    assert.equal(await roomsButton.getAttribute("aria-expanded"), String(which === "rooms"), `${why}: ☰'s aria-expanded`);
    assert.equal(await peopleButton.getAttribute("aria-expanded"), String(which === "people"), `${why}: People's aria-expanded`);
  };
  // outside taps a point of the page that the open drawer does not cover.
  const tapOutside = async (drawer) => {
    const d = await box(drawer);
    const right = d.x + d.width;
    const x = d.x >= viewport.width - right ? d.x / 2 : (right + viewport.width) / 2;
    const y = viewport.height / 2;
    assert.ok(x < d.x || x > d.x + d.width, `the tap at ${x} is outside the drawer ${JSON.stringify(d)}`);
    await P.touchscreen.tap(x, y);
  };

  await shown("", "at first");
  assert.ok(await reachable(roomsButton), "☰ can be tapped");
  assert.ok(await reachable(peopleButton), "People can be tapped");
  await P.screenshot({ path: join(artifacts, "phone-closed.png") });

  {
    await peopleButton.tap();
    await shown("people", "after tapping People");
    const drawer = await box(peopleDrawer);
    assert.ok(drawer.x >= 0 && drawer.x + drawer.width <= viewport.width + 0.5, `the people drawer fits the screen: ${JSON.stringify(drawer)}`);
    // It covers its own button, so it has a close control of its own, on screen and on top.
    const close = await box(closePeople);
    assert.ok(close, "the people drawer shows a close control");
    assert.ok(close.x >= drawer.x && close.x + close.width <= drawer.x + drawer.width && close.y >= drawer.y, `the close control is in the drawer: ${JSON.stringify(close)}`);
    assert.ok(await reachable(closePeople), "the close control can be tapped");
    assert.ok(!overlap(await box(roomsButton), drawer), "the people drawer leaves ☰ uncovered");
    assert.ok(await reachable(roomsButton), "☰ can be tapped while the people drawer is open");
    assert.ok(await reachable(P.locator('[data-testid="presence-user"][data-user="quinn"]')), "the people list is on top");
    await P.screenshot({ path: join(artifacts, "phone-people.png") });
  }
  await P.keyboard.press("Escape");
  await shown("", "after Escape on the people drawer");

  await peopleButton.tap();
  await shown("people", "after tapping People again");
  await tapOutside(peopleDrawer);
  await shown("", "after a tap outside the people drawer");

  await peopleButton.tap();
  await shown("people", "after tapping People a third time");
  await closePeople.tap();
  await shown("", "after tapping the people drawer's close control");

  // ☰ while People is open: Rooms replaces it, its whole list in view.
  await peopleButton.tap();
  await shown("people", "before ☰");
  await roomsButton.tap();
  await shown("rooms", "after ☰ with the people drawer open");
  const drawer = await box(roomsDrawer);
  assert.ok(!overlap(drawer, await box(peopleDrawer)), "the drawers do not overlap");
  assert.ok(!overlap(drawer, await box(roomsButton)), "the rooms drawer leaves ☰ uncovered");
  const items = P.locator('nav.sidebar [data-testid="room-item"]');
  await P.locator(`nav.sidebar [data-testid="room-item"][data-room="${rooms.at(-1)}"]`).waitFor();
  assert.ok((await items.count()) >= rooms.length + 1, "the room list lists the rooms");
  for (const item of await items.all()) {
    const b = await item.boundingBox();
    const name = await item.getAttribute("data-room");
    assert.ok(b.x >= drawer.x && b.x + b.width <= drawer.x + drawer.width + 0.5 && b.y >= drawer.y && b.y + b.height <= viewport.height + 0.5, `room ${name} at ${JSON.stringify(b)} is cut off (drawer ${JSON.stringify(drawer)})`);
    assert.ok(await reachable(item), `room ${name} is covered by something`);
  }
  await P.screenshot({ path: join(artifacts, "phone-rooms.png") });

  await roomsButton.tap();
  await shown("", "after ☰ again");
  await roomsButton.tap();
  await P.keyboard.press("Escape");
  await shown("", "after Escape on the rooms drawer");
  await roomsButton.tap();
  await shown("rooms", "after ☰ once more");
  await tapOutside(roomsDrawer);
  await shown("", "after a tap outside the rooms drawer");

  // Picking a room closes the drawer and shows the room.
  await roomsButton.tap();
  await P.locator('nav.sidebar [data-testid="room-item"][data-room="design"]').tap();
  await P.locator('[data-testid="room-title"][data-room="design"]').waitFor();
  await shown("", "after picking a room");
  assert.deepEqual(errors, [], "uncaught errors in the page");
  console.log(`screenshots: ${artifacts}/{desktop-hover-time,phone-hover-time,phone-closed,phone-people,phone-rooms}.png`);
});
