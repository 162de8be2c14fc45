// web/roomcast.js with a list of URLs against two real roomcast nodes sharing rooms through a
// private redis-server (--redis, docs/cluster.md): a client of a node that is SIGKILLed moves to
// the other node and recovers there with since/epoch — no gap, no duplicate, its own keyed
// publishes sequenced once.
//
//   cd tests/node && ROOMCAST_BIN=../../build/sanitize/roomcast node --test cluster.test.mjs
//
// Skipped when redis-server is not installed (scripts/deps.sh test). The redis-server is
// private: a unix socket only (--port 0: no TCP), its own directory, no persistence, stopped and
// removed afterwards (tests/cluster/redis_server.py is the Python suite's version).

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { RoomcastClient } from "../../web/roomcast.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(process.env.ROOMCAST_BIN ?? path.join(HERE, "../../build/sanitize/roomcast"));
const REDIS_BIN = process.env.ROOMCAST_REDIS_SERVER ?? "redis-server";
const HAVE_REDIS = spawnSync(REDIS_BIN, ["--version"], { encoding: "utf8" }).status === 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

async function until(fn, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
}

// PING over the unix socket: resolves true once redis answers PONG.
function ping(sock) {
  return new Promise((resolve) => {
    const c = net.createConnection(sock);
    let got = "";
    c.on("connect", () => c.write("PING\r\n"));
    c.on("data", (d) => { got += d; if (got.includes("\r\n")) { c.destroy(); resolve(got.startsWith("+PONG")); } });
    c.on("error", () => resolve(false));
  });
}

async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rc-redis-"));
  const sock = path.join(dir, "redis.sock");
  const proc = spawn(REDIS_BIN, ["--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                                 "--dir", dir, "--save", "", "--appendonly", "no",
                                 "--daemonize", "no", "--logfile", path.join(dir, "redis.log")],
                     { stdio: "ignore" });
  const exited = new Promise((res) => proc.on("exit", res));
  await until(() => fs.existsSync(sock), "redis socket");
  await withTimeout((async () => { while (!(await ping(sock))) await sleep(20); })(), 10000, "redis PING");
  return {
    url: `unix://${sock}`,
    async stop() {
      proc.kill("SIGTERM");
      await withTimeout(exited, 10000, "redis exit");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A roomcast node on redis; stop() demands exit status 0, kill() is a SIGKILL.
async function startNode(redisUrl) {
  const proc = spawn(BIN, ["--bind", "127.0.0.1", "--port", "0", "--no-netsync", "--redis", redisUrl],
                     { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const exited = new Promise((res) => proc.on("exit", (code, signal) => res({ code, signal })));
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (d) => { stderr += d; });
  const port = await withTimeout(new Promise((resolve, reject) => {
    const look = () => {
      const m = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      if (m && stderr.includes("redis: available")) resolve(Number(m[1]));
    };
    proc.stderr.on("data", look);
    exited.then(({ code }) => reject(new Error(`roomcast exited ${code}:\n${stderr}`)));
  }), 10000, "roomcast start");
  return {
    url: `ws://127.0.0.1:${port}/`,
    kill() { proc.kill("SIGKILL"); return exited; },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const r = await withTimeout(exited, 20000, "roomcast exit");
      if (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr)) {
        throw new Error(`roomcast exited with ${r.code ?? r.signal}\n${stderr.slice(-3000)}`);
      }
    },
  };
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, k) => a + k);

describe("roomcast.js with a list of URLs over two nodes sharing rooms (--redis)", { skip: !HAVE_REDIS && `${REDIS_BIN} not installed` }, () => {
  let redis, a, b;
  const clients = [];
  const client = (url, opts = {}) => {
    const rc = new RoomcastClient(url, { WebSocket, minDelay: 50, maxDelay: 200, ...opts });
    clients.push(rc);
    return rc;
  };
  before(async () => {
    redis = await startRedis();
    a = await startNode(redis.url);
    b = await startNode(redis.url);
  });
  after(async () => {
    for (const rc of clients) rc.close();
    await b?.stop();
    if (a) await a.kill();
    await redis?.stop();
  });

  test("node a is SIGKILLed: its client moves to b and recovers with no gap and no duplicate", async () => {
    const record = (room) => {
      const r = { ids: [], msgs: [], gaps: [] };
      room.on("message", (m) => { r.ids.push(m.msg_id); r.msgs.push(m); });
      room.on("gap", (g) => r.gaps.push(g));
      return r;
    };
    const watcher = client(b.url);
    const wr = watcher.join("cl-move");
    const seen = record(wr);
    const pub = client(b.url);
    const pr = pub.join("cl-move");
    // The room has no message yet when the mover joins: its epoch is already set (the read that
    // brings a room in step creates it), so the mover can recover under it on b.
    const mover = client([a.url, b.url]);
    const opens = [];
    mover.on("open", (o) => opens.push(o));
    const joins = [];
    const mr = mover.join("cl-move", { onJoined: (j) => joins.push(j) });
    const moved = record(mr);
    await until(() => mr.joined && wr.joined, "all joined");
    assert.equal(mover.url, a.url);
    assert.equal(joins[0].last_msg_id, 0);
    assert.match(joins[0].epoch, /^[0-9a-f]{16}$/);

    // b's publisher keeps going; the mover publishes too (keyed, with acks), through a then b
    const N = 60, M = 20;
    const pubDone = (async () => {
      for (let k = 0; k < N; k++) {
        await pr.publish({ type: "m", from: "p", k }, { ack: true });
        await sleep(5);
      }
    })();
    const moverDone = (async () => {
      const acks = [];
      for (let k = 0; k < M; k++) {
        acks.push(await mr.publish({ type: "m", from: "x", k }, { ack: true }));
        await sleep(10);
      }
      return acks;
    })();
    await until(() => moved.ids.length >= 10, "the mover saw 10 messages on a");
    await a.kill();
    const [, acks] = await withTimeout(Promise.all([pubDone, moverDone]), 30000, "every publish acked");
    await until(() => seen.ids.length >= N + M && moved.ids.length >= N + M, "everything delivered");
    await sleep(100); // nothing more may come: a duplicate would show here
    assert.deepEqual(seen.ids, range(1, N + M), "the watcher on b: gap or duplicate");
    assert.deepEqual(moved.ids, range(1, N + M), "the mover: gap or duplicate");
    const show = (m) => `${m.from}${m.k}`;
    assert.deepEqual(moved.msgs.map(show), seen.msgs.map(show), "the mover saw another order");
    assert.deepEqual(moved.gaps, []);
    // each of the mover's publishes is in the room once, with the msg_id its ack named
    for (let k = 0; k < M; k++) {
      const at = seen.msgs.filter((m) => m.from === "x" && m.k === k);
      assert.equal(at.length, 1, `x${k} sequenced ${at.length} times`);
      assert.equal(acks[k].msg_id, at[0].msg_id);
    }
    // it moved once, to b, and its rejoin there recovered
    assert.equal(mover.url, b.url);
    assert.equal(mover.urlIndex, 1);
    assert.deepEqual(opens.map((o) => [o.url, o.reconnect]), [[a.url, false], [b.url, true]]);
    assert.equal(joins.length, 2);
    assert.equal(joins[1].recovered, true);
  });
});
