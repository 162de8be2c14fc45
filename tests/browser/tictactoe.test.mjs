// Authoritative tic-tac-toe (web/tictactoe.html, served at /tictactoe.html): the rules live in
// the Python room service examples/broker/tictactoe_service.py (an MDP worker, service
// "tictactoe"), roomcast runs with --room-service 'ttt-*=tictactoe'. Two chromium pages:
//
// - the first two pages become X and O; a game played by clicks ends with the same board and
//   winner on both pages;
// - illegal moves (a taken cell, out of turn, after the win) are refused by the worker: the
//   sender gets a ttt_error, the board is unchanged;
// - kill -9 of the worker, a second worker: both pages show the "moved" notice and a new game
//   (on the new worker) is played to the end;
// - a screenshot: build/test-output/tictactoe.png.
//
//   ROOMCAST_BIN=build/sanitize/roomcast node --test tests/browser
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { REPO, OUT, Server, launchBrowser, waitFor } from "./harness.mjs";

const SERVICE = path.join(REPO, "examples/broker/tictactoe_service.py");
const HEARTBEAT = "0.5";   // seconds, both sides: a killed worker is declared dead in ~1.5 s

function startWorker(port) {
  const w = spawn("/usr/bin/python3", [SERVICE, "--broker", `tcp://127.0.0.1:${port}`, "--heartbeat", HEARTBEAT],
                  { stdio: ["ignore", "inherit", "inherit"] });
  w.exited = new Promise((resolve) => w.on("exit", (code, sig) => resolve({ code, sig })));
  return w;
}

async function workerPort(server) {
  const re = /roomcast: broker workers tcp:\/\/\S+:(\d+)/;
  for (let i = 0; i < 200; i++) {
    const m = re.exec(server.stderr);
    if (m) return Number(m[1]);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no broker line in roomcast's stderr:\n${server.stderr}`);
}

describe("tic-tac-toe: rules in a Python room service, two pages", () => {
  const room = `ttt-t${process.pid}`;
  let server, browser, profile, port, worker;
  let a, b;
  const id = {};

  async function tttPage() {
    const page = await browser.newPage();
    page.errors = [];
    page.on("pageerror", (e) => page.errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.port}/tictactoe.html?room=${room}`);
    await waitFor(page, () => window.ttt?.joined && window.ttt.state != null);
    return page;
  }

  // the game's state as the page holds it (without the message's msg_id)
  const stateOf = (page) => page.evaluate(() => { const { msg_id, ...s } = window.ttt.state; return s; });
  // waits until the page's state has `moves` moves (and satisfies the rest of `want`)
  const waitMoves = (page, n) => waitFor(page, (k) => window.ttt.state?.moves === k, n);
  const click = (page, cell) => page.click(`#board button[data-cell="${cell}"]`);

  // one move by click, then both pages show it
  async function play(page, cell, n) {
    await waitFor(page, (c) => !document.querySelector(`#board button[data-cell="${c}"]`).disabled, cell);
    await click(page, cell);
    for (const p of [a, b]) await waitMoves(p, n);
  }

  // an illegal move by script: the sender gets a ttt_error, nothing else changes
  async function refused(page, cell, reason) {
    const before = await stateOf(page);
    const errs = await page.evaluate(() => window.ttt.errors.length);
    await page.evaluate((c) => window.ttt.move(c), cell);
    await waitFor(page, (k) => window.ttt.errors.length > k, errs);
    const err = await page.evaluate(() => window.ttt.errors.at(-1));
    assert.match(err.reason, reason);
    assert.equal(err.board, before.board);
    assert.equal(await page.locator("#error").isVisible(), true, "the page shows the refusal");
    // a round trip through the same worker (hello is answered in order): no state changed
    const other = page === a ? b : a;
    const n = await other.evaluate(() => window.ttt.log.length);
    await other.evaluate(() => window.ttt.hello());
    await waitFor(other, (k) => window.ttt.log.length > k, n);
    for (const p of [a, b]) assert.deepEqual(await stateOf(p), before, "the board is unchanged");
    // the other page saw the error in the room but does not show it as its own
    assert.equal(await other.evaluate((e) => window.ttt.errors.some((x) => x.reason === e), err.reason), false);
  }

  before(async () => {
    server = await Server.start(0, ["--no-netsync", "--broker-worker-port", "0", "--broker-heartbeat", HEARTBEAT,
                                    "--room-service", "ttt-*=tictactoe"]);
    port = await workerPort(server);
    worker = startWorker(port);
    ({ browser, profile } = await launchBrowser());
    a = await tttPage();
    id.a = await a.evaluate(() => window.ttt.me());
    b = await tttPage();
    id.b = await b.evaluate(() => window.ttt.me());
    for (const p of [a, b]) await waitFor(p, (ids) => window.ttt.state.players.X === ids.a && window.ttt.state.players.O === ids.b, id);
  });

  after(async () => {
    for (const p of [a, b]) if (p && !p.isClosed()) await p.close();
    await browser?.close();
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      worker.kill("SIGTERM");
      await worker.exited;
    }
    await server?.stop();
    profile?.remove();
  });

  test("a game to a win: the same board and winner on both pages; illegal moves refused", async () => {
    assert.equal(await a.evaluate(() => window.ttt.myMark()), "X");
    assert.equal(await b.evaluate(() => window.ttt.myMark()), "O");
    await play(a, 0, 1);                                 // X
    await refused(b, 0, /taken/);                        // O on X's cell
    await refused(a, 4, /O's turn/);                     // X again
    await play(b, 3, 2);                                 // O
    await play(a, 1, 3);
    await play(b, 4, 4);
    await play(a, 2, 5);                                 // X wins: top row
    const sa = await stateOf(a), sb = await stateOf(b);
    assert.deepEqual(sa, sb);
    assert.equal(sa.board, "XXXOO....");
    assert.equal(sa.winner, "X");
    assert.equal(sa.turn, null);
    for (const p of [a, b]) assert.equal(await p.locator("#result").textContent(), "X wins");
    await refused(b, 8, /over/);                         // after the win
    await a.screenshot({ path: path.join(OUT, "tictactoe.png") });
  });

  test("kill -9 the worker: the pages show the moved notice, a new game works", async () => {
    for (const p of [a, b]) assert.equal(await p.locator("#moved").isVisible(), false);
    worker.kill("SIGKILL");
    await worker.exited;
    worker = startWorker(port);
    for (const p of [a, b]) {
      await waitFor(p, () => window.ttt.moved === 1, undefined, 20000);
      assert.equal(await p.locator("#moved").isVisible(), true, "the moved notice is shown");
    }
    // the pages said hello to the new worker: a fresh game with both of them seated
    const seated = (ids) => {
      const s = window.ttt.state;
      return s.moves === 0 && s.board === "........." && s.winner === null &&
        [s.players.X, s.players.O].sort().join() === [ids.a, ids.b].sort().join();
    };
    for (const p of [a, b]) await waitFor(p, seated, id);
    const players = (await stateOf(a)).players;
    const x = players.X === id.a ? a : b, o = x === a ? b : a;
    // a draw this time: X O X / X O O / O X X
    const moves = [[x, 0], [o, 1], [x, 2], [o, 4], [x, 3], [o, 5], [x, 7], [o, 6], [x, 8]];
    for (let k = 0; k < moves.length; k++) await play(moves[k][0], moves[k][1], k + 1);
    const sa = await stateOf(a);
    assert.deepEqual(await stateOf(b), sa);
    assert.equal(sa.board, "XOXXOOOXX");
    assert.equal(sa.winner, "draw");
    for (const p of [a, b]) {
      assert.equal(await p.locator("#result").textContent(), "draw");
      assert.equal(await p.locator("#moved").isVisible(), false, "the notice goes once the new game is on");
    }
    // reset by a player: a new game on the same worker
    await o.click("#reset");
    for (const p of [a, b]) await waitFor(p, () => window.ttt.state.moves === 0 && window.ttt.state.board === ".........");
    for (const p of [a, b]) {
      assert.equal(await p.evaluate(() => window.ttt.room.gaps), 0);
      assert.deepEqual(p.errors, []);
    }
  });
});
