// web/roomcast.js against the real server (ROOMCAST_BIN), with npm `ws` as its WebSocket:
// the API of docs/client.md end to end — connecting, order, acks and idempotency keys, errors
// routed to rooms and publishes, reconnect with recovery, sessions, replaced and kicked clients,
// history, room state, conflation and presence.
//
//   cd tests/node && ROOMCAST_BIN=../../build/sanitize/roomcast node --test client.test.mjs
//
// Each describe() block starts its own server and demands exit status 0 after SIGTERM.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { RoomcastClient, RoomcastError } from "../../web/roomcast.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(process.env.ROOMCAST_BIN ?? path.join(HERE, "../../build/sanitize/roomcast"));
const HELP = spawnSync(BIN, ["--help"], { encoding: "utf8", timeout: 10000 });
const EXTRA = `${HELP.stdout ?? ""}${HELP.stderr ?? ""}`.includes("--no-netsync") ? ["--no-netsync"] : [];
const API_KEY = "client-test-key";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

// Polls `fn` until it returns a truthy value.
async function until(fn, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
}

// A roomcast process on `port` (0: any); stop() demands exit status 0.
async function startServer(args = [], port = 0) {
  const proc = spawn(BIN, ["--bind", "127.0.0.1", "--port", String(port), "--api-key", API_KEY, ...EXTRA, ...args],
                     { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const exited = new Promise((res) => proc.on("exit", (code, signal) => res({ code, signal })));
  const got = await withTimeout(new Promise((resolve, reject) => {
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (d) => {
      stderr += d;
      const m = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    exited.then(({ code }) => reject(new Error(`roomcast exited ${code}:\n${stderr}`)));
  }), 10000, "roomcast start");
  return {
    port: got,
    url: `ws://127.0.0.1:${got}/`,
    http: `http://127.0.0.1:${got}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const r = await withTimeout(exited, 20000, "roomcast exit");
      if (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr)) {
        throw new Error(`roomcast exited with ${r.code ?? r.signal}\n${stderr.slice(-3000)}`);
      }
    },
  };
}

const clients = [];
function client(url, opts = {}) {
  const rc = new RoomcastClient(url, { WebSocket, minDelay: 50, maxDelay: 200, ...opts });
  clients.push(rc);
  return rc;
}
function closeAll() { for (const rc of clients.splice(0)) rc.close(); }

// Joins `name` and resolves with [room, joinedInfo] once joined.
function joinRoom(rc, name, opts = {}) {
  return withTimeout(new Promise((resolve) => {
    const room = rc.join(name, { ...opts, onJoined: (j, r) => { opts.onJoined?.(j, r); resolve([room, j]); } });
  }), 10000, `joined ${name}`);
}

// Records a room's messages, gaps, errors and other events.
function record(room) {
  const r = { ids: [], msgs: [], gaps: [], errors: [], states: [], presence: [], conflated: [] };
  room.on("message", (m) => { r.ids.push(m.msg_id); r.msgs.push(m); });
  room.on("gap", (g) => r.gaps.push(g));
  room.on("error", (e) => r.errors.push(e));
  room.on("state", (ms, _room, info) => r.states.push({ ms, info }));
  room.on("presence", (p) => r.presence.push(p));
  room.on("conflated", (c) => r.conflated.push(...c.msg_ids));
  return r;
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, k) => a + k);

describe("roomcast.js: connecting, order, acks, errors (the server as it is)", () => {
  let srv;
  before(async () => { srv = await startServer(["--max-rooms-per-client", "3"]); });
  after(async () => { closeAll(); await srv.stop(); });

  test("listeners attached after the constructor see every state; one order for every member", async () => {
    const a = client(srv.url), b = client(srv.url);
    const states = [];
    a.on("state", (s) => states.push(s));
    const [ra, ja] = await joinRoom(a, "c-order");
    const [rb] = await joinRoom(b, "c-order");
    assert.deepEqual(states, ["connecting", "open"]);
    assert.equal(a.clientId, ja.client_id);
    assert.match(a.session, /^[0-9a-f]{32}$/);
    const ra1 = record(ra), rb1 = record(rb);
    for (let i = 0; i < 30; i++) { ra.publish({ type: "m", from: "a", i }); rb.publish({ type: "m", from: "b", i }); }
    ra.publish(new Uint8Array([1, 2, 3]));
    await until(() => ra1.ids.length === 61 && rb1.ids.length === 61, "61 messages each");
    assert.deepEqual(ra1.ids, range(1, 61));
    assert.deepEqual(rb1.ids, ra1.ids);
    const show = (m) => (m.binary ? `bin:${[...m.payload]}` : `${m.from}${m.i}`);
    assert.deepEqual(ra1.msgs.map(show), rb1.msgs.map(show));
    assert.ok(rb1.msgs.some((m) => m.binary && m.client_id === a.clientId && show(m) === "bin:1,2,3"));
    assert.deepEqual([ra1.gaps, rb1.gaps], [[], []]);
  });

  test("connect: false waits for connect()", async () => {
    const rc = client(srv.url, { connect: false });
    await sleep(50);
    assert.equal(rc.state, "idle");
    rc.connect();
    await withTimeout(rc.ready(), 10000, "ready");
    assert.equal(rc.state, "open");
  });

  test("acks resolve with the msg_id; the same idempotency key again is a duplicate", async () => {
    const rc = client(srv.url);
    const [room] = await joinRoom(rc, "c-acks");
    const rec = record(room);
    const a1 = await room.publish({ type: "m", n: 1 }, { ack: true });
    assert.equal(a1.msg_id, 1);
    assert.equal(a1.duplicate, false);
    assert.equal(typeof a1.key, "string");
    const key = rc.newKey();
    const a2 = await room.publish({ type: "m", n: 2 }, { ack: true, key });
    const a3 = await room.publish({ type: "m", n: 2 }, { ack: true, key });
    assert.deepEqual([a2.msg_id, a2.duplicate], [2, false]);
    assert.deepEqual([a3.msg_id, a3.duplicate], [2, true], "the resend is recognised");
    const a4 = await room.publish({ type: "m", n: 3 }, { ack: true, key: false });
    assert.equal(a4.msg_id, 3);
    await until(() => rec.ids.length === 3, "3 messages");
    assert.deepEqual(rec.msgs.map((m) => [m.n, m.ack, m.idempotency_key]), [[1, undefined, undefined], [2, undefined, undefined], [3, undefined, undefined]],
                     "ack and key are for the server: not forwarded");
  });

  test("publishing into a left room returns false and reports room_closed", async () => {
    const rc = client(srv.url);
    const [room] = await joinRoom(rc, "c-left");
    const errs = [];
    rc.on("error", (e) => errs.push(e.code));
    const left = new Promise((r) => room.on("left", r));
    room.leave();
    assert.equal(room.publish({ type: "m" }), false);
    await assert.rejects(room.publish({ type: "m" }, { ack: true }), (e) => e instanceof RoomcastError && e.code === "room_closed");
    await withTimeout(left, 10000, "left");
    assert.deepEqual(errs, ["room_closed", "room_closed"]);
  });

  test("kicked (DELETE /api/clients/{id}): the client stops instead of reconnecting", async () => {
    const rc = client(srv.url);
    await joinRoom(rc, "c-kick");
    const kicked = new Promise((r) => rc.on("kicked", r));
    const res = await fetch(`${srv.http}/api/clients/${rc.clientId}`,
                            { method: "DELETE", headers: { Authorization: `Bearer ${API_KEY}` } });
    assert.equal(res.status, 200);
    const info = await withTimeout(kicked, 10000, "kicked");
    assert.equal(info.code, 1008);
    await sleep(300);
    assert.equal(rc.state, "closed");
    assert.equal(rc.closeInfo.by, "kicked");
    assert.equal(rc.reconnects, 0);
  });

  test("an idempotency key resent after a reconnect (session presented) is recognised", async () => {
    const rc = client(srv.url);
    const [room] = await joinRoom(rc, "c-resend");
    const session = rc.session;
    const key = rc.newKey();
    const first = await room.publish({ type: "m" }, { ack: true, key });
    rc._ws.terminate();                    // the connection drops (ws: no close handshake)
    await until(() => rc.reconnects === 1 && room.joined, "rejoined");
    assert.equal(rc.session, session, "the session is kept");
    const again = await room.publish({ type: "m" }, { ack: true, key });
    assert.deepEqual([again.msg_id, again.duplicate], [first.msg_id, true]);
  });
});

describe("roomcast.js: reconnect and recovery across a server restart", () => {
  test("the client rejoins by itself, reports the new epoch, and sends what was queued", async () => {
    let srv = await startServer();
    const port = srv.port;
    try {
      const rc = client(srv.url);
      const [room, j1] = await joinRoom(rc, "c-restart");
      const rec = record(room);
      await room.publish({ type: "m", n: 1 }, { ack: true });
      await until(() => rec.ids.length === 1, "first message");
      const closed = new Promise((r) => rc.once("close", r));
      await srv.stop();
      assert.equal((await closed).willReconnect, true);
      assert.equal(room.publish({ type: "m", n: 2 }), false, "queued while down");
      const acked = room.publish({ type: "m", n: 3 }, { ack: true });
      srv = await startServer([], port);
      const ack = await withTimeout(acked, 15000, "ack after the reconnect");
      await until(() => rec.msgs.some((m) => m.n === 3), "queued messages arrive");
      assert.equal(rc.reconnects, 1);
      assert.notEqual(room.epoch, j1.epoch, "a new server, a new epoch");
      assert.deepEqual(rec.gaps.map((g) => g.reason), ["new_epoch"]);
      assert.deepEqual(rec.msgs.map((m) => [m.msg_id, m.n]), [[1, 1], [1, 2], [2, 3]]);
      assert.equal(ack.msg_id, 2);
    } finally {
      closeAll();
      await srv.stop();
    }
  });
});

// The protocol of issue 12 (docs/protocol.md: sessions, late joiners, room state, conflation,
// presence, errors with "room" and "ref"): these need the server's side of it.
describe("roomcast.js: issue 12's protocol", () => {
  let srv;
  before(async () => { srv = await startServer(["--max-rooms-per-client", "2", "--max-pending", String(64 << 20)]); });
  after(async () => { closeAll(); await srv.stop(); });

  test("a refused publish rejects its ack with the error's ref; a refused join is the room's error", async () => {
    const rc = client(srv.url);
    const [room] = await joinRoom(rc, "c-err-1");
    const roomErrs = [];
    room.on("error", (e) => roomErrs.push(e.code));
    await assert.rejects(withTimeout(room.publish({ type: "ack" }, { ack: true }), 5000, "reserved_type answer"),
                         (e) => e instanceof RoomcastError && e.code === "reserved_type" && e.ref != null && !e.local);
    assert.deepEqual(roomErrs, ["reserved_type"]);
    await joinRoom(rc, "c-err-2");
    const third = rc.join("c-err-3");
    const err = await withTimeout(new Promise((r) => third.on("error", r)), 5000, "too_many_rooms on the room");
    assert.equal(err.code, "too_many_rooms");
    assert.equal(err.room, "c-err-3");
    assert.equal(third.joined, false);
  });

  test("sessions: after a dropped connection the client keeps its client_id", async () => {
    const rc = client(srv.url);
    const [room] = await joinRoom(rc, "c-session");
    const id = rc.clientId;
    const sessions = [];
    rc.on("session", (s) => sessions.push(s));
    rc._ws.terminate();
    await until(() => rc.reconnects === 1 && room.joined, "rejoined");
    assert.equal(rc.clientId, id, "the session gave the client_id back");
    assert.deepEqual(sessions, []);
  });

  test("replaced: a connection presenting the session closes the first; it stops, no loop", async () => {
    const rc = client(srv.url);
    await joinRoom(rc, "c-replaced");
    const replaced = new Promise((r) => rc.on("replaced", r));
    const other = client(srv.url, { session: rc.session });
    const [, j] = await joinRoom(other, "c-replaced");
    assert.equal(j.client_id, rc.clientId, "the newer connection is the same member");
    const info = await withTimeout(replaced, 10000, "replaced");
    assert.equal(info.code, 1008);
    await sleep(500);
    assert.equal(rc.state, "closed");
    assert.equal(rc.reconnects, 0);
    assert.equal(other.state, "open", "the newer one is left alone");
  });

  test("banned: kicked with ?ban, the client stops; its session presented again is refused on the room", async () => {
    const rc = client(srv.url);
    await joinRoom(rc, "c-ban");
    const kicked = new Promise((r) => rc.on("kicked", r));
    const res = await fetch(`${srv.http}/api/clients/${rc.clientId}?ban=60`,
                            { method: "DELETE", headers: { Authorization: `Bearer ${API_KEY}` } });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).banned, true);
    await withTimeout(kicked, 10000, "kicked");
    assert.equal(rc.state, "closed");
    const again = client(srv.url, { session: rc.session });
    const room = again.join("c-ban");
    const err = await withTimeout(new Promise((r) => room.on("error", r)), 10000, "banned");
    assert.deepEqual([err.code, err.room], ["banned", "c-ban"]);
    assert.equal(room.joined, false);
    assert.equal(again.session, rc.session, "a banned session is not thrown away by the client");
  });

  test("history: a late joiner gets the last N messages, then live, without a gap", async () => {
    const pub = client(srv.url);
    const [room] = await joinRoom(pub, "c-history");
    for (let i = 1; i <= 10; i++) room.publish({ type: "m", i });
    await room.publish({ type: "m", i: 11 }, { ack: true });
    const late = client(srv.url);
    // the replay follows joined at once: record from the join on
    const rec = { ids: [], gaps: [] };
    const [lr, j] = await joinRoom(late, "c-history", { history: 4, onMessage: (m) => rec.ids.push(m.msg_id),
                                                       onGap: (g) => rec.gaps.push(g) });
    assert.equal(j.replay_from, 8);
    assert.equal(lr.replayFrom, 8);
    room.publish({ type: "m", i: 12 });
    await until(() => rec.ids.length === 5, "replay + live");
    assert.deepEqual(rec.ids, [8, 9, 10, 11, 12]);
    assert.deepEqual(rec.gaps, []);
  });

  test("state: a late joiner gets each key's latest message at once, then live from last_msg_id + 1", async () => {
    const pub = client(srv.url);
    const [room] = await joinRoom(pub, "c-state");
    for (let i = 0; i < 9; i++) room.publish({ type: "pos", who: `p${i % 3}`, i, state_key: `pos/p${i % 3}` });
    room.publish({ type: "chat", text: "not state" });
    await room.publish({ type: "gone", state_key: "pos/p0", state_delete: true }, { ack: true });
    const late = client(srv.url);
    const states = [];
    const [lr] = await joinRoom(late, "c-state", { state: true, onState: (ms, _r, info) => states.push({ ms, info }) });
    const rec = record(lr);
    await until(() => states.length === 1, "the state");
    assert.equal(states[0].info.last_msg_id, 11);
    assert.deepEqual(states[0].ms.map((m) => [m.state_key, m.i, m.msg_id]), [["pos/p1", 7, 8], ["pos/p2", 8, 9]]);
    room.publish({ type: "pos", who: "p1", i: 99, state_key: "pos/p1" });
    await until(() => rec.ids.length === 1, "live");
    assert.deepEqual(rec.ids, [12]);
    assert.deepEqual(rec.gaps, []);
    assert.equal(lr.lastMsgId, 12);
  });

  test("conflation: a member that reads slowly gets the latest of each key, and no gap", async () => {
    const slow = client(srv.url, { conflateGrace: 2000 });
    const [sr] = await joinRoom(slow, "c-conflate", { conflate: true });
    const rec = record(sr);
    const pub = client(srv.url);
    const [pr] = await joinRoom(pub, "c-conflate");
    slow._ws._socket.pause();                  // ws: stop reading; the server's queue fills
    const pad = "x".repeat(4000);
    const N = 6000;
    for (let i = 1; i < N; i++) {
      pr.publish({ type: "pos", i, pad, state_key: `k${i % 4}` });
      if (i % 500 === 0) await sleep(5);
    }
    const last = await pr.publish({ type: "pos", i: N, pad, state_key: `k${N % 4}` }, { ack: true });
    await sleep(200);
    slow._ws._socket.resume();
    await until(() => sr.lastMsgId === last.msg_id, "caught up", 60000);
    await sleep(300);
    assert.ok(rec.conflated.length > 0, "some messages were conflated");
    assert.equal(sr.conflated, rec.conflated.length);
    const seen = new Set([...rec.ids, ...rec.conflated]);
    assert.equal(seen.size, rec.ids.length + rec.conflated.length, "no id both delivered and conflated");
    assert.deepEqual([...seen].sort((a, b) => a - b), range(1, last.msg_id));
    assert.deepEqual(rec.gaps, []);
    // the latest of each key arrived
    for (let k = 0; k < 4; k++) {
      const lastOfKey = Math.max(...range(1, N).filter((i) => i % 4 === k));
      assert.ok(rec.msgs.some((m) => m.i === lastOfKey), `the last k${k} (${lastOfKey}) delivered`);
    }
  });

  test("presence: members in joined, join and leave events, room.members kept up to date", async () => {
    const a = client(srv.url);
    const [ra] = await joinRoom(a, "c-presence", { presence: true });
    const rec = record(ra);
    assert.deepEqual([...ra.members], [a.clientId]);
    const b = client(srv.url);
    await joinRoom(b, "c-presence", { presence: true });
    await until(() => ra.members.has(b.clientId), "b joined");
    assert.equal(ra.memberCount, 2);
    const bid = b.clientId;
    b.close();
    await until(() => !ra.members.has(bid), "b left");
    const leave = rec.presence.find((p) => p.event === "leave");
    assert.deepEqual([leave.client_id, leave.reason], [bid, "closed"]);
    assert.deepEqual(rec.presence.map((p) => p.event), ["join", "leave"]);
    assert.equal(ra.memberCount, 1);
  });
});

describe("roomcast.js: connection tokens (docs/auth.md)", () => {
  const SECRET = "node-client-auth-secret-0123456789abc";
  const b64u = (s) => Buffer.from(s).toString("base64url");
  async function token(sub, ttl = 300) {
    const { createHmac } = await import("node:crypto");
    const signing = `${b64u(JSON.stringify({ alg: "HS256" }))}.${b64u(JSON.stringify(
      { sub, exp: Math.floor(Date.now() / 1000) + ttl }))}`;
    return `${signing}.${createHmac("sha256", SECRET).update(signing).digest("base64url")}`;
  }
  let srv;
  before(async () => { srv = await startServer(["--jwt-secret", SECRET, "--jwt-leeway", "0"]); });
  after(async () => { closeAll(); await srv.stop(); });

  test("the token goes first: messages carry the user, and a client's own is replaced", async () => {
    const rc = client(srv.url, { token: await token("nodeuser") });
    const authed = [];
    rc.on("authenticated", (a) => authed.push(a));
    const [room] = await joinRoom(rc, "node-auth");
    const r = record(room);
    room.publish({ text: "hi", user: "forged" });
    await until(() => r.msgs.length === 1, "the message");
    assert.equal(r.msgs[0].user, "nodeuser");
    assert.equal(rc.user, "nodeuser");
    assert.equal(authed.length, 1);
    assert.ok(rc.tokenExp > Date.now() / 1000);
  });

  test("getToken refreshes before exp: the connection outlives its first token", async () => {
    let asked = 0;
    const rc = client(srv.url, { getToken: async () => { asked++; return token("refresher", 3); } });
    const [room] = await joinRoom(rc, "node-refresh");
    const firstExp = rc.tokenExp;
    await until(() => Date.now() / 1000 > firstExp + 1.5, "past the first exp", 10000);
    assert.equal(rc.state, "open");
    assert.equal(rc.reconnects, 0);
    assert.ok(asked >= 2 && rc.tokenExp > firstExp);
    const r = record(room);
    room.publish({ n: 1 });
    await until(() => r.msgs.length === 1, "the message");
    assert.equal(r.msgs[0].user, "refresher");
  });

  test("a refused fixed token stops the client (unauthenticated)", async () => {
    const rc = client(srv.url, { token: await token("late", -10) });
    const stopped = new Promise((resolve) => rc.on("unauthenticated", resolve));
    rc.join("never");
    const info = await withTimeout(stopped, 10000, "unauthenticated");
    assert.equal(info.code, 4001);
    assert.equal(rc.state, "closed");
    assert.equal(rc.closeInfo.by, "unauthenticated");
  });
});
