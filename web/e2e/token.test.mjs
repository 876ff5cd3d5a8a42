// Without --dev there is no open sign-in: the page asks for a token, which it
// keeps out of URLs and cookies.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, test } from "node:test";
import { browser, parleydBin, startParleyd, waitOnline } from "./harness.mjs";

const stops = [];
after(async () => {
  for (const stop of stops) await stop();
});

test("a server without --dev asks for a token, and the token stays out of URLs and cookies", { timeout: 60000 }, async () => {
  const server = await startParleyd("parleyd-no-dev", [], { dev: false });
  stops.push(() => server.stop());
  const token = execFileSync(parleydBin(), ["token", "--data-dir", server.dataDir, "erin"], { encoding: "utf8" }).trim();
  const { ctx, page, errors } = await browser("erin");
  stops.push(() => ctx.close());
  const urls = [];
  page.on("request", (req) => urls.push(req.url()));
  page.on("websocket", (ws) => urls.push(ws.url()));

  await page.goto(server.url + "/");
  await page.getByTestId("login-token").waitFor(); // the page found out there is no dev login
  await page.getByTestId("login-token").fill("not a token");
  await page.getByTestId("login-submit").click();
  await page.getByTestId("login-error").filter({ hasText: "does not look like a Parley token" }).waitFor();

  await page.getByTestId("login-token").fill(token);
  await page.getByTestId("login-submit").click();
  await waitOnline(page);
  await page.getByTestId("me").filter({ hasText: "erin" }).waitFor();
  await page.getByTestId("message-body").first().or(page.locator(".intro")).first().waitFor();

  assert.deepEqual(await ctx.cookies(), [], "no cookies");
  const leaks = urls.filter((u) => u.includes(token) || u.includes(token.split(".")[2]));
  assert.deepEqual(leaks, [], "the token appears in a URL");
  assert.ok(urls.some((u) => u.startsWith("ws://") && u.endsWith("/parley.v1.ChatService/Join")), `the Join WebSocket was opened: ${urls}`);

  await page.getByTestId("signout").click();
  await page.getByTestId("login-token").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("parley.token")), null, "sign out forgets the token");
  assert.deepEqual(errors, []);
});
