// The dots game (web/game.html, served at /game.html) played by two chromium pages and a
// Python bot (game_bot.py, Debian's python3-websockets) in one room:
//
// - one order: the pages and the bot record every message; their msg_id sequences (and what
//   each message says) are identical, apart from ids the server reported as conflated;
// - presence: a page that closes disappears from the other page's board;
// - room state: a third page that joins late draws every dot at once, from the state snapshot;
// - a screenshot of the board: build/test-output/game.png.
//
//   ROOMCAST_BIN=build/sanitize/roomcast node --test tests/browser
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { HERE, OUT, Server, launchBrowser, waitFor } from "./harness.mjs";

const BOT_MOVES = 40;

// The bot's stdout, one JSON object a line: next() resolves with the next one.
function jsonLines(proc) {
  let buf = "";
  const queue = [], waiters = [];
  proc.stdout.setEncoding("utf8");
  proc.stdout.on("data", (d) => {
    buf += d;
    for (let i; (i = buf.indexOf("\n")) >= 0;) {
      const v = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w.resolve(v); else queue.push(v);
    }
  });
  proc.on("exit", (code) => { for (const w of waiters.splice(0)) w.reject(new Error(`bot exited ${code}`)); });
  return {
    next(ms = 20000) {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("bot: no line in time")), ms);
        waiters.push({ resolve: (v) => { clearTimeout(t); resolve(v); },
                       reject: (e) => { clearTimeout(t); reject(e); } });
      });
    },
  };
}

describe("the dots game: two pages and a Python bot", () => {
  const room = `game-${process.pid}`;
  let server, browser, profile, bot, botOut, botExit;
  let a, b;
  const ids = {};

  async function gamePage(name) {
    const page = await browser.newPage();
    page.errors = [];
    page.on("pageerror", (e) => page.errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.port}/game.html?room=${room}&name=${name}`);
    // joined, and its own dot came back from the room
    await waitFor(page, () => window.game?.joined && window.game.dots.has(window.game.me()));
    return page;
  }

  const dotsOf = (page) => page.evaluate(() => Object.fromEntries([...window.game.dots].map(([id, d]) => [id, [d.x, d.y]])));

  before(async () => {
    server = await Server.start();
    ({ browser, profile } = await launchBrowser());
    a = await gamePage("ann");
    b = await gamePage("bob");
    bot = spawn("/usr/bin/python3", [path.join(HERE, "game_bot.py"), String(server.port), room, String(BOT_MOVES)],
                { stdio: ["pipe", "pipe", "inherit"] });
    botExit = new Promise((resolve) => bot.on("exit", (code) => resolve(code)));
    botOut = jsonLines(bot);
    ids.bot = (await botOut.next()).ready;
    ids.a = await a.evaluate(() => window.game.me());
    ids.b = await b.evaluate(() => window.game.me());
  });

  after(async () => {
    if (bot && bot.exitCode === null) {
      bot.stdin.end();
      assert.equal(await botExit, 0, "the bot exits cleanly");
    }
    for (const p of [a, b]) if (p && !p.isClosed()) await p.close();
    await browser?.close();
    await server?.stop();
    profile?.remove();
  });

  test("keyboard, script and bot moves: every player sees one msg_id order", async () => {
    // everybody is in (the bot's first position reached both pages)
    for (const p of [a, b]) await waitFor(p, (id) => window.game.dots.has(id), ids.bot);
    // the bot starts on "go"; the pages move by keyboard and by script at the same time
    await a.evaluate(() => window.game.room.publish({ type: "go" }));
    const tick = () => new Promise((r) => setTimeout(r, 5));
    await Promise.all([
      (async () => { for (let i = 0; i < 12; i++) await a.keyboard.press(i % 2 ? "ArrowRight" : "ArrowDown"); })(),
      (async () => { for (let i = 0; i < 12; i++) await b.keyboard.press(i % 3 ? "d" : "s"); })(),
      a.evaluate(async () => { for (let i = 0; i < 25; i++) { window.game.move(1, 0); await new Promise((r) => setTimeout(r, 5)); } }),
      b.evaluate(async () => { for (let i = 0; i < 25; i++) { window.game.move(0, 1); await new Promise((r) => setTimeout(r, 5)); } }),
      tick(),
    ]);
    assert.deepEqual(await botOut.next(), { moved: BOT_MOVES });
    await b.evaluate(() => window.game.room.publish({ type: "end" }));
    const botRec = await botOut.next();
    assert.ok(Array.isArray(botRec.log), JSON.stringify(botRec).slice(0, 200));
    for (const p of [a, b]) await waitFor(p, () => window.game.log.some((m) => m.type === "end"));

    const rec = {
      ann: { log: await a.evaluate(() => window.game.log), conflated: await a.evaluate(() => window.game.conflated) },
      bob: { log: await b.evaluate(() => window.game.log), conflated: await b.evaluate(() => window.game.conflated) },
      bot: botRec,
    };
    const endId = rec.ann.log.find((m) => m.type === "end").msg_id;
    // each observer: increasing msg_ids, every id in between either received or conflated
    for (const [who, { log, conflated }] of Object.entries(rec)) {
      const skip = new Set(conflated);
      assert.equal(log[log.length - 1].msg_id, endId, `${who} ends with the end message`);
      for (let k = 1; k < log.length; k++) {
        assert.ok(log[k].msg_id > log[k - 1].msg_id, `${who}: msg_id ${log[k].msg_id} after ${log[k - 1].msg_id}`);
        for (let id = log[k - 1].msg_id + 1; id < log[k].msg_id; id++) {
          assert.ok(skip.has(id), `${who}: msg_id ${id} neither received nor conflated`);
        }
      }
    }
    // from the last joiner's first message on, all three saw the same messages in the same
    // order (a message conflated away for one of them is left out of the comparison)
    const from = Math.max(...Object.values(rec).map((r) => r.log[0].msg_id));
    const conflatedAny = new Set(Object.values(rec).flatMap((r) => r.conflated));
    const view = (r) => r.log.filter((m) => m.msg_id >= from && !conflatedAny.has(m.msg_id))
      .map((m) => `${m.msg_id}:${m.client_id}:${m.type}:${m.x ?? ""},${m.y ?? ""}`);
    assert.deepEqual(view(rec.ann), view(rec.bob), "ann and bob: one order");
    assert.deepEqual(view(rec.bot), view(rec.ann), "the bot and ann: one order");
    const moves = view(rec.ann).filter((s) => s.includes(":pos:")).length;
    assert.ok(moves >= 2 * 37 + BOT_MOVES - conflatedAny.size, `every move is in the common order (${moves})`);
    // and both boards agree
    assert.deepEqual(await dotsOf(a), await dotsOf(b));
    await a.waitForTimeout(300);
    await a.screenshot({ path: path.join(OUT, "game.png") });
    for (const p of [a, b]) {
      assert.equal(await p.evaluate(() => window.game.gaps), 0);
      assert.deepEqual(p.errors, []);
    }
  });

  test("presence: a page that closes disappears from the other board", async () => {
    await b.close();
    await waitFor(a, (id) => !window.game.dots.has(id) &&
      window.game.presence.some((p) => p.event === "leave" && p.client_id === id), ids.b);
    const members = await a.evaluate(() => [...window.game.room.members].sort((x, y) => x - y));
    assert.deepEqual(members, [ids.a, ids.bot].sort((x, y) => x - y));
  });

  test("room state: a late third page draws every dot at once", async () => {
    const c = await gamePage("cy");
    try {
      const first = await c.evaluate(() => window.game.afterState);
      assert.ok(first, "the state snapshot arrived");
      const board = await dotsOf(a);
      const got = Object.fromEntries(first.map((d) => [d.id, [d.x, d.y]]));
      assert.deepEqual(got, { [ids.a]: board[ids.a], [ids.bot]: board[ids.bot] },
                       "right after the snapshot: ann and the bot where they are, not the page that left");
      const idc = await c.evaluate(() => window.game.me());
      await waitFor(a, (id) => window.game.dots.has(id), idc);
      assert.deepEqual(await c.evaluate(() => window.game.gaps), 0);
      assert.deepEqual(c.errors, []);
      await a.waitForTimeout(300);
      await a.screenshot({ path: path.join(OUT, "game.png") });
    } finally {
      await c.close();
    }
  });
});
