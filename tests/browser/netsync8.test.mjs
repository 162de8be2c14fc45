// The NetSync venue view (web/netsync.html) fed by protocol-8 clients (NetSync 0.16's wire
// format): tests/browser/netsync8_feeder.py runs two walking headsets, a stealth camera and an
// object through tests/netsync/ns8client.py, and a v0.6 room runs beside it
// (netsync_feeder.py), so the room list shows both generations. Debian's chromium through
// playwright-core, as in browser.test.mjs; saves build/test-output/netsync8.png.
//
//   ROOMCAST_BIN=build/sanitize/roomcast node --test tests/browser
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { HERE, OUT, Server, launchBrowser, waitFor } from "./harness.mjs";

let browser, profile;

before(async () => { ({ browser, profile } = await launchBrowser()); });
after(async () => { await browser?.close(); profile?.remove(); });

const NETSYNC_RE = /netsync router tcp:\/\/\S+:(\d+) .*\bpose tcp:\/\/\S+:(\d+)/;

// The netsync line follows the "listening" line the harness waits for.
async function netsyncPorts(s) {
  const m = NETSYNC_RE.exec(s.stderr) ?? await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no netsync line:\n${s.stderr}`)), 10000);
    s.proc.stderr.on("data", () => {
      const x = NETSYNC_RE.exec(s.stderr);
      if (x) { clearTimeout(timer); resolve(x); }
    });
  });
  return { router: Number(m[1]), pose: Number(m[2]) };
}

function feeder(script, args) {
  const p = spawn("/usr/bin/python3", [path.join(HERE, script), ...args.map(String)],
                  { stdio: ["pipe", "pipe", "inherit"] });
  p.ready = new Promise((resolve, reject) => {
    p.stdout.on("data", (d) => { if (/ready/.test(d)) resolve(); });
    p.on("exit", (code) => reject(new Error(`${script} exited ${code}`)));
  });
  p.done = new Promise((resolve) => p.on("exit", resolve));
  return p;
}

test("the NetSync venue view draws a protocol-8 room: avatars, an object, both generations listed", async () => {
  const ns = await Server.start(0, ["--netsync-router-port", "0", "--netsync-pub-port", "0",
                                    "--netsync-discovery-port", "0", "--netsync-pose-port", "0"]);
  const ports = await netsyncPorts(ns);
  const v8 = feeder("netsync8_feeder.py", [ports.router, ports.pose, "venue8"]);
  const v06 = feeder("netsync_feeder.py", [ports.router, "stage6"]);
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    await Promise.all([v8.ready, v06.ready]);
    await page.goto(`http://127.0.0.1:${ns.port}/netsync.html?room=venue8`);
    await page.waitForSelector("#status.open", { timeout: 15000 });
    // the room list has both generations, marked
    await page.waitForSelector('#rooms button[data-room="venue8"][data-protocol="8"].active', { timeout: 15000 });
    await page.waitForSelector('#rooms button[data-room="stage6"][data-protocol="6"]', { timeout: 15000 });
    assert.match(await page.textContent('#rooms button[data-room="venue8"] .gen'), /v8/);
    assert.match(await page.textContent('#rooms button[data-room="stage6"] .gen'), /v0\.6/);
    // avatars of the v8 headsets in number order, the stealth camera named but not placed
    await page.waitForSelector('#devices tr[data-device="v8-headset-2"]', { timeout: 15000 });
    await page.waitForSelector('#stealth li[data-device="v8-operator-cam"]', { timeout: 15000 });
    const rows = await page.$$eval("#devices tr", (trs) => trs.map((t) => t.dataset.device));
    assert.deepEqual(rows, ["v8-headset-1", "v8-headset-2"]);
    assert.match(await page.textContent("#gen"), /protocol 8/);
    // rates from the per-device pose counters: ~20 Hz per headset
    await waitFor(page, () => [...document.querySelectorAll("#devices .hz")].every((e) => Number(e.textContent) >= 5));
    // decoded positions: the headsets walk a 2.5 m circle (i24 centimetres on the wire)
    const r = await page.$$eval("#devices tr", (trs) => trs.map((t) =>
      Math.hypot(Number(t.children[3].textContent), Number(t.children[4].textContent))));
    for (const d of r) assert.ok(Math.abs(d - 2.5) < 0.05, `radius ${d}`);
    const x0 = await page.textContent('#devices tr[data-device="v8-headset-1"] td:nth-child(4)');
    await waitFor(page, (x) => document.querySelector('#devices tr[data-device="v8-headset-1"] td:nth-child(4)').textContent !== x, x0);
    // the object, owned by headset-1 (number 1), moves on its 1.2 m circle
    await page.waitForSelector('#objects tr[data-object="7001"]', { timeout: 15000 });
    assert.equal(await page.textContent('#objects tr[data-object="7001"] .owner'), "#1");
    const ox = await page.textContent('#objects tr[data-object="7001"] td:nth-child(3)');
    const oz = await page.textContent('#objects tr[data-object="7001"] td:nth-child(4)');
    assert.ok(Math.abs(Math.hypot(Number(ox), Number(oz)) - 1.2) < 0.05, `object at ${ox}, ${oz}`);
    await waitFor(page, (x) => document.querySelector('#objects tr[data-object="7001"] td:nth-child(3)').textContent !== x, ox);
    assert.equal(await page.textContent("#nobjects"), "1");
    // a variable set from the page reaches the v8 room and comes back in its next sample
    await page.fill("#varname", "show-phase");
    await page.fill("#varvalue", "finale");
    await page.click("#setvar button");
    await page.waitForSelector('#vars li[data-var="show-phase"]', { timeout: 10000 });
    assert.match(await page.textContent('#vars li[data-var="show-phase"]'), /finale.*by #0/);
    // switching to the v0.6 room shows its headsets, with no object and the v0.6 badge
    await page.click('#rooms button[data-room="stage6"]');
    await page.waitForSelector('#devices tr[data-device="headset-2"]', { timeout: 15000 });
    await waitFor(page, () => document.querySelector("#gen").textContent === "v0.6");
    assert.equal(await page.textContent("#nobjects"), "0");
    await page.click('#rooms button[data-room="venue8"]');
    await page.waitForSelector('#objects tr[data-object="7001"]', { timeout: 15000 });
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(OUT, "netsync8.png") });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    for (const f of [v8, v06]) f.stdin.end();
    await Promise.all([v8.done, v06.done]);
    await ns.stop();
  }
});
