// A page from another origin may neither call grpc-web nor open the Join
// WebSocket, unless the server lists that origin in --allowed-origins.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { browser, startParleyd } from "./harness.mjs";

let other; // a static page server on another loopback port: another origin
let otherOrigin;
const stops = [];

before(async () => {
  other = createServer((req, res) => {
    res.writeHead(req.url === "/" ? 200 : 404, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>elsewhere</title><p>another site</p>");
  });
  await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
  otherOrigin = `http://127.0.0.1:${other.address().port}`;
});

after(async () => {
  for (const stop of stops) await stop();
  other?.close();
});

// probe runs in a page of the other origin: a grpc-web DevLogin call, and a
// Join WebSocket, against target.
async function probe(page, target) {
  return page.evaluate(async (target) => {
    const out = {};
    const name = new TextEncoder().encode("mallory");
    const body = new Uint8Array([0, 0, 0, 0, name.length + 2, 0x0a, name.length, ...name]);
    try {
      const res = await fetch(`${target}/parley.v1.ChatService/DevLogin`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body,
      });
      out.fetch = `status ${res.status}`;
      out.fetchBytes = (await res.arrayBuffer()).byteLength;
    } catch (err) {
      out.fetch = `blocked: ${err.name}`;
    }
    out.websocket = await new Promise((resolve) => {
      const ws = new WebSocket(`${target.replace("http", "ws")}/parley.v1.ChatService/Join`, "grpc-websockets");
      ws.onopen = () => {
        ws.close();
        resolve("opened");
      };
      ws.onerror = () => resolve("refused");
    });
    return out;
  }, target);
}

test("a page from a disallowed origin can neither call grpc-web nor open the WebSocket", { timeout: 60000 }, async () => {
  const server = await startParleyd("parleyd-same-origin");
  stops.push(() => server.stop());
  const { ctx, page } = await browser("elsewhere");
  stops.push(() => ctx.close());
  await page.goto(otherOrigin + "/");
  const got = await probe(page, server.url);
  assert.equal(got.fetch, "blocked: TypeError", `grpc-web call from ${otherOrigin}: ${JSON.stringify(got)}`);
  assert.equal(got.websocket, "refused", `WebSocket from ${otherOrigin}: ${JSON.stringify(got)}`);
});

test("the same page works once its origin is in --allowed-origins (the probe itself is sound)", { timeout: 60000 }, async () => {
  const server = await startParleyd("parleyd-allowed-origin", ["--allowed-origins", otherOrigin]);
  stops.push(() => server.stop());
  const { ctx, page } = await browser("allowed");
  stops.push(() => ctx.close());
  await page.goto(otherOrigin + "/");
  const got = await probe(page, server.url);
  assert.equal(got.fetch, "status 200", JSON.stringify(got));
  assert.ok(got.fetchBytes > 50, `a token came back: ${JSON.stringify(got)}`);
  assert.equal(got.websocket, "opened", JSON.stringify(got));
});
