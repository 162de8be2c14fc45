// permessage-deflate in headless Chromium (issue 17): the browser offers it by default
// ("permessage-deflate; client_max_window_bits", keeping its context), roomcast accepts; two
// pages in a room exchange large and small JSON messages both ways — the browser's compressed
// messages are inflated by the connection's own inflater (context kept across messages), the
// room's compressed broadcasts are inflated by the browser — and the pages see them intact.
//
//   ROOMCAST_BIN=build/sanitize/roomcast node --test tests/browser/deflate.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Server, launchBrowser, waitFor } from "./harness.mjs";

let browser, server, profile;

before(async () => {
  server = await Server.start();
  ({ browser, profile } = await launchBrowser());
});

after(async () => {
  await browser?.close();
  if (server) await server.stop();
  profile?.remove();
});

async function member(port, room) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/status`);
  await page.evaluate(({ port, room }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    window.ws = ws;
    window.got = [];
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "joined") resolve();
      else window.got.push(m);
    };
    ws.onerror = () => reject(new Error("websocket error"));
    ws.onopen = () => ws.send(JSON.stringify({ type: "join", room }));
  }), { port, room });
  return page;
}

test("Chromium negotiates permessage-deflate and messages cross intact both ways", async () => {
  const a = await member(server.port, "chromium-deflate");
  const b = await member(server.port, "chromium-deflate");
  for (const p of [a, b]) {
    const ext = await p.evaluate(() => window.ws.extensions);
    assert.match(ext, /^permessage-deflate; server_no_context_takeover/);
  }
  // From a: poses (small, compressed by Chromium, some below the threshold on the way out),
  // then big repetitive JSON (compressed both ways, context kept by Chromium).
  await a.evaluate(() => {
    for (let i = 0; i < 20; i++)
      window.ws.send(JSON.stringify({ type: "pose", i, x: i * 1.5, anim: "run", pad: "é".repeat(i * 20) }));
    for (let i = 0; i < 5; i++)
      window.ws.send(JSON.stringify({ type: "big", i, text: `tile-${i};`.repeat(20000) }));
  });
  await waitFor(b, () => window.got.length >= 25).catch(async (e) => {
    throw new Error(`b got ${JSON.stringify(await b.evaluate(() => window.got.map((m) => m.type)))}`);
  });
  const got = await b.evaluate(() => window.got);
  assert.deepEqual(got.slice(0, 20).map((m) => [m.type, m.i, m.pad.length]),
    Array.from({ length: 20 }, (_, i) => ["pose", i, i * 20]));
  for (let i = 0; i < 5; i++) assert.equal(got[20 + i].text, `tile-${i};`.repeat(20000));
  // and back from b
  await b.evaluate(() => window.ws.send(JSON.stringify({ type: "answer", text: "ok ".repeat(500) })));
  await waitFor(a, () => window.got.some((m) => m.type === "answer"));
  const stats = await (await fetch(`http://127.0.0.1:${server.port}/api/stats`)).json();
  assert.equal(stats.errors_ws_1002 ?? 0, 0);
  assert.equal(stats.errors_ws_1007 ?? 0, 0);
  await a.close();
  await b.close();
});
