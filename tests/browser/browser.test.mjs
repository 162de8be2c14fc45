// The web client (web/roomcast.js) and the demo (web/index.html) in a real browser: Debian's
// chromium (/usr/bin/chromium) driven by npm playwright-core, headless. playwright-core never
// downloads a browser; it is pointed at the system one.
//
//   ROOMCAST_BIN=build/sanitize/roomcast node --test tests/browser
//
// - two pages in one room exchange messages and see the same msg_id order;
// - a page whose server goes away (restarted on the same port) reconnects by itself, rejoins,
//   and keeps exchanging messages;
// - a screenshot of the demo page is saved as build/test-output/demo.png;
// - the NetSync venue view (web/netsync.html) shows pyzmq NetSync clients live, sets a
//   variable through the server, and is saved as build/test-output/netsync.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { HERE, OUT, Server, launchBrowser, waitFor } from "./harness.mjs";

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

// A page with the client library loaded from the server, joined to `room`. Everything it
// receives is recorded in window.got; window.rc is the client.
async function clientPage(port, room) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.errors = errors;
  await page.goto(`http://127.0.0.1:${port}/status`);
  await page.evaluate(async ({ room }) => {
    const { RoomcastClient } = await import("/roomcast.js");
    window.got = [];
    window.gaps = [];
    window.rc = new RoomcastClient(`ws://${location.host}/`, { minDelay: 100, maxDelay: 500 });
    window.room = window.rc.join(room, {
      onMessage: (m) => window.got.push(m),
      onGap: (g) => window.gaps.push(g),
    });
    await new Promise((resolve) => window.room.on("joined", resolve));
  }, { room });
  return page;
}

test("two pages in one room exchange messages in the same order", async () => {
  const a = await clientPage(server.port, "browser-order");
  const b = await clientPage(server.port, "browser-order");
  // both publish at once, interleaving
  await Promise.all([
    a.evaluate(() => { for (let i = 0; i < 50; i++) window.room.publish({ type: "chat", from: "a", i }); }),
    b.evaluate(() => { for (let i = 0; i < 50; i++) window.room.publish({ type: "chat", from: "b", i }); }),
  ]);
  await waitFor(a, () => window.got.length >= 100);
  await waitFor(b, () => window.got.length >= 100);
  const seqA = await a.evaluate(() => window.got.map((m) => `${m.msg_id}:${m.from}${m.i}`));
  const seqB = await b.evaluate(() => window.got.map((m) => `${m.msg_id}:${m.from}${m.i}`));
  assert.equal(seqA.length, 100);
  assert.deepEqual(seqA, seqB, "both pages see the same messages in the same order");
  const ids = seqA.map((s) => Number(s.split(":")[0]));
  assert.deepEqual(ids, ids.map((_, k) => ids[0] + k), "msg_ids are consecutive");
  for (const p of [a, b]) {
    assert.deepEqual(await p.evaluate(() => window.gaps), []);
    assert.deepEqual(p.errors, []);
    await p.close();
  }
});

test("a page reconnects by itself after the server restarts", async () => {
  const port = server.port;
  const a = await clientPage(port, "browser-reconnect");
  await a.evaluate(() => window.room.publish({ type: "chat", text: "before" }));
  await waitFor(a, () => window.got.some((m) => m.text === "before"));
  const reconnectsBefore = await a.evaluate(() => window.rc.reconnects);

  await server.stop();
  server = null;
  await waitFor(a, () => window.rc.state === "reconnecting");
  // messages published while disconnected are queued and sent after the rejoin
  await a.evaluate(() => window.room.publish({ type: "chat", text: "while-down" }));
  server = await Server.start(port);

  await waitFor(a, () => window.rc.state === "open" && window.room.joined, undefined, 20000);
  assert.equal(await a.evaluate(() => window.rc.reconnects), reconnectsBefore + 1);
  await waitFor(a, () => window.got.some((m) => m.text === "while-down"));
  // and a second page in the new server's room sees what the reconnected page publishes
  const b = await clientPage(port, "browser-reconnect");
  await a.evaluate(() => window.room.publish({ type: "chat", text: "after" }));
  await waitFor(b, () => window.got.some((m) => m.text === "after"));
  assert.deepEqual(a.errors, []);
  await a.close();
  await b.close();
});

test("the demo page works and looks right (screenshot)", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.port}/?nick=ada`);
  await page.waitForSelector("#status.open", { timeout: 15000 });
  const peer = await browser.newPage();
  await peer.goto(`http://127.0.0.1:${server.port}/?nick=grace`);
  await peer.waitForSelector("#status.open", { timeout: 15000 });
  const lines = [
    [page, "Hi! Is this thing on?"], [peer, "Loud and clear — msg_ids line up on my side too."],
    [page, "Open a second window and watch the chart move"], [peer, "⚡ try the burst button"],
  ];
  for (const [p, text] of lines) {
    await p.fill("#text", text);
    await p.press("#text", "Enter");
    await p.waitForFunction((t) => [...document.querySelectorAll(".msg .text")].some((e) => e.textContent === t),
                            text, { timeout: 10000 });
  }
  // the peer's messages reach the demo page, in order
  await page.waitForFunction(() => document.querySelectorAll(".msg").length >= 4, undefined, { timeout: 10000 });
  const ids = await page.$$eval(".msg", (els) => els.map((e) => Number(e.dataset.msgId)));
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
  // let the live panel draw a few points
  await page.waitForFunction(() => Number(document.getElementById("k-conn").textContent) >= 2,
                             undefined, { timeout: 10000 });
  await page.waitForTimeout(1500);
  await peer.click("#burst");
  await page.waitForFunction(() => [...document.querySelectorAll(".system")].some((e) => /200 messages/.test(e.textContent)),
                             undefined, { timeout: 10000 });
  await page.waitForTimeout(2500);
  await page.screenshot({ path: path.join(OUT, "demo.png") });
  assert.deepEqual(errors, []);
  await peer.close();
  await page.close();
});

test("the NetSync venue view draws a live room and sets a variable", async () => {
  const ns = await Server.start(0, ["--netsync-router-port", "0", "--netsync-pub-port", "0",
                                    "--netsync-discovery-port", "0", "--netsync-pose-port", "0"]);
  const router = Number(/netsync router tcp:\/\/\S+:(\d+)/.exec(ns.stderr)?.[1] ??
    await new Promise((resolve) => ns.proc.stderr.on("data", () => {
      const m = /netsync router tcp:\/\/\S+:(\d+)/.exec(ns.stderr);
      if (m) resolve(m[1]);
    })));
  const feeder = spawn("/usr/bin/python3", [path.join(HERE, "netsync_feeder.py"), String(router), "stage"],
                       { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise((resolve, reject) => {
    feeder.stdout.on("data", (d) => { if (/ready/.test(d)) resolve(); });
    feeder.on("exit", (code) => reject(new Error(`feeder exited ${code}`)));
  });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    // no ?room=: the page picks the first room it finds in GET /api/netsync/rooms
    await page.goto(`http://127.0.0.1:${ns.port}/netsync.html`);
    await page.waitForSelector("#status.open", { timeout: 15000 });
    await page.waitForSelector('#rooms button[data-room="stage"].active', { timeout: 15000 });
    await page.waitForSelector('#devices tr[data-device="headset-2"]', { timeout: 15000 });
    await page.waitForSelector('#stealth li[data-device="operator-cam"]', { timeout: 15000 });
    // rates come from the counters in consecutive states: ~20 Hz per headset
    await waitFor(page, () => [...document.querySelectorAll("#devices .hz")].every((e) => Number(e.textContent) >= 5));
    const rows = await page.$$eval("#devices tr", (trs) => trs.map((t) => t.dataset.device));
    assert.deepEqual(rows, ["headset-1", "headset-2"]);
    assert.equal(await page.textContent("#roomname"), "stage");
    // positions move: the map is live, not a snapshot
    const x0 = await page.textContent('#devices tr[data-device="headset-1"] td:nth-child(4)');
    await waitFor(page, (x) => document.querySelector('#devices tr[data-device="headset-1"] td:nth-child(4)').textContent !== x, x0);
    // a variable set from the page comes back from the server as a sync
    await page.fill("#varname", "show-phase");
    await page.fill("#varvalue", "finale");
    await page.click("#setvar button");
    await page.waitForSelector('#vars li[data-var="show-phase"]', { timeout: 10000 });
    assert.match(await page.textContent('#vars li[data-var="show-phase"]'), /finale.*by #0/);
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(OUT, "netsync.png") });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    feeder.stdin.end();
    await new Promise((resolve) => feeder.on("exit", resolve));
    await ns.stop();
  }
});
