// web/roomcast.js against a scripted server: a fake WebSocket (passed as opts.WebSocket) that
// records what the client sends and lets each test play the server's side of docs/protocol.md
// frame by frame. No roomcast process: these tests pin the client's protocol handling (order
// check, recovery, sessions, acks, errors, state, conflation, presence) deterministically.
// client.test.mjs runs the same API against the real server.
//
//   cd tests/node && node --test client_protocol.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { RoomcastClient, RoomcastError } from "../../web/roomcast.js";

const tick = () => new Promise((r) => setTimeout(r, 0));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One fake connection. The test opens it, feeds it server frames and reads what was sent.
class FakeWS {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWS.all.push(this);
  }
  send(data) { this.sent.push(typeof data === "string" ? JSON.parse(data) : data); }
  close(code, reason) { this.closedWith = { code, reason }; this.readyState = 3; }
  // --- the test's side
  open() { this.readyState = 1; this.onopen?.({}); }
  recv(obj) { this.onmessage?.({ data: typeof obj === "string" ? obj : JSON.stringify(obj) }); }
  recvBinary(buf) { this.onmessage?.({ data: buf }); }
  drop(code = 1006, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
  take() { return this.sent.splice(0); }
  static last() { return FakeWS.all[FakeWS.all.length - 1]; }
}

function client(opts = {}) {
  FakeWS.all = [];
  return new RoomcastClient("ws://fake/", { WebSocket: FakeWS, minDelay: 5, maxDelay: 10, ...opts });
}

// A client connected and joined to `room`: returns { rc, room, ws }.
async function joined(roomName = "r", joinOpts = {}, extra = {}, opts = {}) {
  const rc = client(opts);
  const room = rc.join(roomName, joinOpts);
  await tick();
  const ws = FakeWS.last();
  ws.open();
  const j = ws.take();
  assert.equal(j[0].type, "join");
  ws.recv({ type: "joined", room: roomName, client_id: 7, last_msg_id: 0, epoch: "e1",
            session: "s".repeat(32), ...extra });
  return { rc, room, ws, join: j[0] };
}

function msg(id, extra = {}) { return { type: "m", room: "r", client_id: 1, msg_id: id, ...extra }; }

test("the constructor emits nothing: listeners attached right after see 'connecting'", async () => {
  const rc = client();
  const states = [];
  rc.on("state", (s) => states.push(s));
  assert.equal(FakeWS.all.length, 0, "no socket inside the constructor");
  assert.equal(rc.state, "idle");
  await tick();
  assert.deepEqual(states, ["connecting"]);
  FakeWS.last().open();
  assert.deepEqual(states, ["connecting", "open"]);
  rc.close();
  assert.deepEqual(states, ["connecting", "open", "closed"]);
});

test("{ connect: false } waits for connect(); close() then connect() starts again", async () => {
  const rc = client({ connect: false });
  await tick();
  assert.equal(FakeWS.all.length, 0);
  assert.equal(rc.connect(), rc);
  assert.equal(rc.state, "connecting");
  FakeWS.last().open();
  await rc.ready();
  rc.close();
  await assert.rejects(rc.ready(), (e) => e instanceof RoomcastError && e.code === "closed");
  rc.connect();
  FakeWS.last().open();
  assert.equal(rc.state, "open");
  rc.close();
});

test("join sends the room's options; the session goes in the first join of a connection", async () => {
  const { rc, room, ws, join } = await joined("r", { history: 20, state: true, conflate: true, presence: true });
  assert.deepEqual(join, { type: "join", room: "r", history: 20, state: true, conflate: true, presence: true });
  assert.equal(rc.session, "s".repeat(32));
  assert.equal(rc.clientId, 7);
  rc.join("other");
  assert.equal(ws.take()[0].session, undefined, "no session on later joins of a connection");
  ws.recv({ type: "joined", room: "other", client_id: 7, last_msg_id: 5, epoch: "e2", session: "s".repeat(32) });
  ws.recv(msg(1));
  ws.drop();
  await sleep(30);
  const ws2 = FakeWS.last();
  assert.notEqual(ws2, ws);
  ws2.open();
  const joins = ws2.take();
  assert.equal(joins.length, 2);
  assert.deepEqual(joins[0], { type: "join", room: "r", session: "s".repeat(32), since: 1, epoch: "e1",
                               history: 20, state: true, conflate: true, presence: true });
  assert.deepEqual(joins[1], { type: "join", room: "other", since: 5, epoch: "e2" });
  assert.equal(room.joined, false);
  rc.close();
});

test("a join refused by the server is reported on the room and retried by join()", async () => {
  const rc = client();
  const room = rc.join("busy");
  const errs = [];
  room.on("error", (e) => errs.push(e.code));
  await tick();
  const ws = FakeWS.last();
  ws.open();
  ws.take();
  ws.recv({ type: "error", code: "too_many_rooms", room: "busy", message: "no" });
  assert.deepEqual(errs, ["too_many_rooms"]);
  assert.equal(rc.join("busy"), room);
  assert.equal(ws.take()[0].type, "join", "join() sends the join again");
  rc.close();
});

test("acks resolve, errors with the publish's ref reject, other errors go to their room", async () => {
  const { rc, room, ws } = await joined("r", { onError: (e) => roomErrs.push(e.code) });
  const roomErrs = [];
  const clientErrs = [];
  rc.on("error", (e, r) => clientErrs.push([e.code, r?.name]));
  const p1 = room.publish({ type: "m", n: 1 }, { ack: true });
  const p2 = room.publish({ type: "ack" }, { ack: true, key: false });
  const [s1, s2] = ws.take();
  assert.equal(typeof s1.ack, "number");
  assert.equal(typeof s1.idempotency_key, "string", "an ack publish gets a key");
  assert.equal(s1.room, "r");
  assert.equal(s2.idempotency_key, undefined, "key: false");
  ws.recv({ type: "ack", ref: s1.ack, room: "r", msg_id: 3 });
  assert.deepEqual(await p1, { msg_id: 3, duplicate: false, room: "r", ref: s1.ack, key: s1.idempotency_key });
  ws.recv({ type: "error", code: "reserved_type", room: "r", ref: s2.ack, message: "reserved" });
  await assert.rejects(p2, (e) => e instanceof RoomcastError && e.code === "reserved_type" &&
                                  e.ref === s2.ack && e.room === "r" && !e.local);
  ws.recv({ type: "error", code: "state_full", room: "r", message: "full" });
  ws.recv({ type: "error", code: "bad_json", message: "?" });
  assert.deepEqual(roomErrs, ["reserved_type", "state_full"]);
  assert.deepEqual(clientErrs, [["reserved_type", "r"], ["state_full", "r"], ["bad_json", undefined]]);
  // a duplicate key answers the original msg_id
  const p3 = room.publish({ type: "m" }, { ack: true, key: "k1" });
  const [s3] = ws.take();
  assert.equal(s3.idempotency_key, "k1");
  ws.recv({ type: "ack", ref: s3.ack, room: "r", msg_id: 3, duplicate: true });
  assert.equal((await p3).duplicate, true);
  rc.close();
});

test("publishing into a left room returns false and reports room_closed, never throws", async () => {
  const { rc, room, ws } = await joined();
  const errs = [];
  rc.on("error", (e) => errs.push(e));
  room.leave();
  assert.deepEqual(ws.take(), [{ type: "leave", room: "r" }]);
  assert.equal(room.publish({ type: "m" }), false);
  await assert.rejects(room.publish({ type: "m" }, { ack: true }), (e) => e.code === "room_closed" && e.local);
  assert.deepEqual(errs.map((e) => [e.code, e.room, e.local]), [["room_closed", "r", true], ["room_closed", "r", true]]);
  assert.deepEqual(ws.take(), [], "nothing sent");
  assert.throws(() => room.publish(new Uint8Array(3), { ack: true }), TypeError);
  rc.close();
});

test("leave then join the same name: 'left' belongs to the old room", async () => {
  const { rc, room, ws } = await joined();
  const lefts = [];
  room.on("left", () => lefts.push("old"));
  const p = room.publish({ type: "m" }, { ack: true });
  const [s] = ws.take();
  room.leave();
  const again = rc.join("r", { onLeft: () => lefts.push("new") });
  assert.notEqual(again, room);
  assert.deepEqual(ws.take().map((m) => m.type), ["leave", "join"]);
  ws.recv({ type: "ack", ref: s.ack, room: "r", msg_id: 1 });
  assert.equal((await p).msg_id, 1, "an ack that comes before left still resolves");
  ws.recv({ type: "left", room: "r" });
  ws.recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 1, epoch: "e1" });
  assert.deepEqual(lefts, ["old"]);
  assert.equal(again.joined, true);
  rc.close();
});

test("keyed publishes not acked before a reconnect are resent with their key; key: false rejects", async () => {
  const { rc, room, ws } = await joined();
  const pk = room.publish({ type: "m", n: 1 }, { ack: true });
  const pn = room.publish({ type: "m", n: 2 }, { ack: true, key: false });
  room.publish({ type: "m", n: 3 }, { key: "mine-3" });          // keyed, no promise
  room.publish({ type: "m", n: 4 });                             // fire and forget
  const sent = ws.take();
  ws.drop();
  await assert.rejects(pn, (e) => e.code === "connection_lost");
  room.publish({ type: "m", n: 5 });                             // queued while away
  assert.equal(room.queued, 3);
  await sleep(30);
  const ws2 = FakeWS.last();
  ws2.open();
  const j = ws2.take();
  assert.equal(j.length, 1);
  ws2.recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 2, epoch: "e1", recovered: true,
             session: "s".repeat(32) });
  const resent = ws2.take();
  assert.deepEqual(resent.map((m) => m.n), [1, 3, 5], "unacked keyed first, then the queue");
  assert.equal(resent[0].idempotency_key, sent[0].idempotency_key);
  assert.equal(resent[0].ack, sent[0].ack);
  assert.equal(resent[1].idempotency_key, "mine-3");
  ws2.recv({ type: "ack", ref: resent[0].ack, room: "r", msg_id: 1, duplicate: true });
  assert.deepEqual(await pk, { msg_id: 1, duplicate: true, room: "r", ref: sent[0].ack, key: sent[0].idempotency_key });
  rc.close();
});

test("queue_full drops the oldest queued publish and rejects its ack", async () => {
  const rc = client({ maxQueued: 2 });
  const room = rc.join("r");
  const errs = [];
  room.on("error", (e) => errs.push(e.code));
  const p = room.publish({ type: "m", n: 1 }, { ack: true });
  assert.equal(room.publish({ type: "m", n: 2 }), false);
  assert.equal(room.publish({ type: "m", n: 3 }), false);
  await assert.rejects(p, (e) => e.code === "queue_full");
  assert.deepEqual(errs, ["queue_full"]);
  assert.equal(room.queued, 2);
  rc.close();
});

test("closed as replaced (1008): no reconnect, 'replaced' emitted, waiting acks rejected", async () => {
  const { rc, room, ws } = await joined();
  const events = [];
  rc.on("replaced", (i) => events.push(["replaced", i.code]));
  rc.on("close", (i) => events.push(["close", i.willReconnect]));
  const p = room.publish({ type: "m" }, { ack: true });
  ws.drop(1008, "replaced by a new connection");
  await assert.rejects(p, (e) => e.code === "replaced");
  await sleep(50);
  assert.equal(FakeWS.all.length, 1, "no new connection");
  assert.equal(rc.state, "closed");
  assert.equal(rc.closeInfo.by, "replaced");
  assert.deepEqual(events, [["close", false], ["replaced", 1008]]);
  // publishing afterwards is refused with the reason, not queued for ever
  const errs = [];
  room.on("error", (e) => errs.push(e.code));
  assert.equal(room.publish({ type: "m" }), false);
  await assert.rejects(room.publish({ type: "m" }, { ack: true }), (e) => e.code === "replaced" && e.local);
  assert.deepEqual(errs, ["replaced", "replaced"]);
  assert.equal(room.queued, 0);
});

test("after close(), publish is refused with code closed; connect() makes it work again", async () => {
  const { rc, room } = await joined();
  rc.close();
  const errs = [];
  rc.on("error", (e) => errs.push(e.code));
  assert.equal(room.publish({ type: "m" }), false);
  assert.deepEqual(errs, ["closed"]);
  rc.connect();
  const ws = FakeWS.last();
  ws.open();
  assert.equal(ws.take()[0].type, "join");
  assert.equal(room.publish({ type: "m", n: 1 }), false, "queued until joined");
  ws.recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 0, epoch: "e1", recovered: true });
  assert.deepEqual(ws.take().map((m) => m.n), [1]);
  rc.close();
});

test("kicked (1008 kicked): no reconnect, 'kicked' emitted; other 1008s reconnect", async () => {
  let { rc, ws } = await joined();
  let kicked = 0;
  rc.on("kicked", () => kicked++);
  ws.drop(1008, "kicked");
  await sleep(50);
  assert.equal(kicked, 1);
  assert.equal(FakeWS.all.length, 1);
  assert.equal(rc.state, "closed");
  ({ rc, ws } = await joined());
  ws.drop(1008, "slow consumer");
  await sleep(50);
  assert.equal(FakeWS.all.length, 2, "a slow consumer reconnects");
  rc.close();
});

test("a session changes: the 'session' event tells the old and new client_id", async () => {
  const { rc, ws } = await joined();
  const ev = [];
  rc.on("session", (s) => ev.push(s));
  ws.drop();
  await sleep(30);
  FakeWS.last().open();
  FakeWS.last().recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 0, epoch: "e1", session: "s".repeat(32) });
  assert.deepEqual(ev, [], "same identity: no event");
  FakeWS.last().drop();
  await sleep(30);
  FakeWS.last().open();
  FakeWS.last().recv({ type: "joined", room: "r", client_id: 9, last_msg_id: 0, epoch: "e1", session: "t".repeat(32) });
  assert.deepEqual(ev, [{ session: "t".repeat(32), clientId: 9, previous: { session: "s".repeat(32), clientId: 7 } }]);
  rc.close();
});

test("order check: duplicates dropped, holes reported, not_recovered and new_epoch gaps", async () => {
  const { rc, room, ws } = await joined();
  const got = [], gaps = [];
  room.on("message", (m) => got.push(m.msg_id));
  room.on("gap", (g) => gaps.push(g));
  for (const id of [1, 2, 2, 1, 5]) ws.recv(msg(id));
  assert.deepEqual(got, [1, 2, 5]);
  assert.deepEqual(gaps, [{ room: "r", from: 3, to: 4, reason: "gap" }]);
  ws.drop();
  await sleep(30);
  FakeWS.last().open();
  assert.equal(FakeWS.last().take()[0].since, 5);
  FakeWS.last().recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 9, epoch: "e1", recovered: false });
  assert.deepEqual(gaps[1], { room: "r", from: 6, to: 9, reason: "not_recovered" });
  FakeWS.last().recv(msg(10));
  FakeWS.last().drop();
  await sleep(30);
  FakeWS.last().open();
  FakeWS.last().recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 2, epoch: "e9", recovered: false });
  assert.deepEqual(gaps[2], { room: "r", from: 11, to: null, reason: "new_epoch" });
  FakeWS.last().recv(msg(3));
  assert.deepEqual(got, [1, 2, 5, 10, 3]);
  assert.equal(room.gaps, 3);
  rc.close();
});

test("binary messages share the order check", async () => {
  const { rc, room, ws } = await joined();
  const got = [];
  room.on("message", (m) => got.push(m));
  const name = new TextEncoder().encode("r");
  const frame = new Uint8Array(17 + name.length + 2);
  const v = new DataView(frame.buffer);
  v.setBigUint64(0, 1n, true);
  v.setBigUint64(8, 4n, true);
  frame[16] = name.length;
  frame.set(name, 17);
  frame.set([9, 8], 17 + name.length);
  ws.recvBinary(frame.buffer);
  ws.recv(msg(2));
  assert.equal(got[0].binary, true);
  assert.deepEqual([got[0].msg_id, got[0].client_id, [...got[0].payload]], [1, 4, [9, 8]]);
  assert.equal(got[1].msg_id, 2);
  room.publish(new Uint8Array([1, 2]));
  assert.deepEqual([...ws.take()[0]], [1, "r".charCodeAt(0), 1, 2]);
  rc.close();
});

test("history: the replay from replay_from is delivered, no gap", async () => {
  const { rc, room, ws, join } = await joined("r", { history: 3 }, { last_msg_id: 10, replay_from: 8 });
  assert.equal(join.history, 3);
  const got = [], gaps = [];
  room.on("message", (m) => got.push(m.msg_id));
  room.on("gap", (g) => gaps.push(g));
  for (const id of [8, 9, 10, 11]) ws.recv(msg(id));
  assert.deepEqual(got, [8, 9, 10, 11]);
  assert.deepEqual(gaps, []);
  assert.equal(room.replayFrom, 8);
  rc.close();
});

test("state: onState gets the snapshot, live messages go on from its last_msg_id + 1", async () => {
  const states = [];
  const { rc, room, ws } = await joined("r", { state: true, onState: (ms, r, info) => states.push([ms, info.last_msg_id]) },
                                        { last_msg_id: 41 });
  const got = [], gaps = [];
  room.on("message", (m) => got.push(m.msg_id));
  room.on("gap", (g) => gaps.push(g));
  const snap = [msg(17, { state_key: "a" }), msg(40, { state_key: "b" })];
  ws.recv({ type: "state", room: "r", last_msg_id: 41, messages: snap });
  ws.recv(msg(42));
  assert.deepEqual(states, [[snap, 41]]);
  assert.deepEqual(got, [42]);
  assert.deepEqual(gaps, []);
  // a recovered rejoin replays instead: its state is not delivered again
  ws.drop();
  await sleep(30);
  const ws2 = FakeWS.last();
  ws2.open();
  const j = ws2.take()[0];
  assert.equal(j.state, true);
  assert.equal(j.since, 42);
  ws2.recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 44, epoch: "e1", recovered: true });
  ws2.recv({ type: "state", room: "r", last_msg_id: 44, messages: [] });
  ws2.recv(msg(43));
  ws2.recv(msg(44));
  assert.equal(states.length, 1);
  assert.deepEqual(got, [42, 43, 44]);
  // a rejoin that could not recover resynchronises from the state
  ws2.drop();
  await sleep(30);
  const ws3 = FakeWS.last();
  ws3.open();
  ws3.recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 60, epoch: "e1", recovered: false });
  ws3.recv({ type: "state", room: "r", last_msg_id: 60, messages: [msg(59, { state_key: "a" })] });
  ws3.recv(msg(61));
  assert.equal(states.length, 2);
  assert.deepEqual(got, [42, 43, 44, 61]);
  assert.deepEqual(gaps.map((g) => [g.from, g.to, g.reason]), [[45, 60, "not_recovered"]]);
  rc.close();
});

test("state with a history replay: the replay carries the order check", async () => {
  const { rc, room, ws } = await joined("r", { state: true, history: 2 }, { last_msg_id: 5, replay_from: 4 });
  const got = [];
  room.on("message", (m) => got.push(m.msg_id));
  ws.recv({ type: "state", room: "r", last_msg_id: 5, messages: [msg(5, { state_key: "a" })] });
  for (const id of [4, 5, 6]) ws.recv(msg(id));
  assert.deepEqual(got, [4, 5, 6]);
  assert.equal(room.gaps, 0);
  rc.close();
});

test("conflation: announced ids are not gaps, before or after the hole shows", async () => {
  const conf = [];
  const { rc, room, ws } = await joined("r", { conflate: true, onConflated: (c) => conf.push(c.msg_ids) },
                                        {}, { conflateGrace: 40 });
  const got = [], gaps = [];
  room.on("message", (m) => got.push(m.msg_id));
  room.on("gap", (g) => gaps.push(g));
  ws.recv(msg(1));
  // notice first: 2 and 3 are skipped when 4 comes
  ws.recv({ type: "conflated", room: "r", state_key: "k", msg_ids: [2, 3] });
  ws.recv(msg(4, { state_key: "k" }));
  // hole first: 6 goes missing when 7 (another key) passes; its notice comes before 8
  ws.recv(msg(5));
  ws.recv(msg(7, { state_key: "j" }));
  ws.recv({ type: "conflated", room: "r", state_key: "k", msg_ids: [6] });
  ws.recv(msg(8, { state_key: "k" }));
  // a real hole: 10 is never explained
  ws.recv(msg(11));
  assert.deepEqual(gaps, [], "holes wait for conflateGrace");
  await sleep(120);
  assert.deepEqual(got, [1, 4, 5, 7, 8, 11]);
  assert.deepEqual(conf, [[2, 3], [6]]);
  assert.deepEqual(gaps, [{ room: "r", from: 9, to: 10, reason: "gap" }]);
  assert.equal(room.conflated, 3);
  rc.close();
});

test("presence: members from joined, join/leave/batch events, a sync event on every join", async () => {
  const ev = [];
  const { rc, room, ws } = await joined("r", { presence: true, onPresence: (p) => ev.push(p.event) },
                                        { members: [7, 3] });
  assert.deepEqual([...room.members].sort(), [3, 7]);
  ws.recv({ type: "presence", room: "r", event: "join", client_id: 12, after_msg_id: 0 });
  ws.recv({ type: "presence", room: "r", event: "leave", client_id: 3, reason: "dropped", after_msg_id: 0 });
  assert.deepEqual([...room.members].sort((a, b) => a - b), [7, 12]);
  assert.equal(room.memberCount, 2);
  ws.recv({ type: "presence", room: "r", event: "batch", joined: [20, 21], left: [12], member_count: 3, after_msg_id: 0 });
  assert.deepEqual([...room.members].sort((a, b) => a - b), [7, 20, 21]);
  ws.drop();
  await sleep(30);
  FakeWS.last().open();
  FakeWS.last().recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 0, epoch: "e1", members: [7, 21] });
  assert.deepEqual([...room.members].sort((a, b) => a - b), [7, 21]);
  assert.deepEqual(ev, ["sync", "join", "leave", "batch", "sync"]);
  // a big room gives a count only
  FakeWS.last().drop();
  await sleep(30);
  FakeWS.last().open();
  FakeWS.last().recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 0, epoch: "e1", member_count: 500 });
  assert.equal(room.members, null);
  assert.equal(room.memberCount, 500);
  rc.close();
});

test("a throwing handler does not stop delivery; its exception is rethrown in a microtask", async () => {
  const { rc, room, ws } = await joined();
  const got = [];
  const rethrown = [];
  const qm = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => { try { fn(); } catch (e) { rethrown.push(e.message); } };
  try {
    room.on("message", () => { throw new Error("app bug"); });
    room.on("message", (m) => got.push(m.msg_id));
    ws.recv(msg(1));
  } finally {
    globalThis.queueMicrotask = qm;
  }
  assert.deepEqual(got, [1]);
  assert.deepEqual(rethrown, ["app bug"]);
  rc.close();
});

test("a session the server refuses as bad_field is dropped and the join sent again without it", async () => {
  const rc = client({ session: "not-a-session" });
  const room = rc.join("r");
  await tick();
  const ws = FakeWS.last();
  ws.open();
  assert.equal(ws.take()[0].session, "not-a-session");
  ws.recv({ type: "error", code: "bad_field", room: "r", message: "bad session" });
  const again = ws.take();
  assert.deepEqual(again, [{ type: "join", room: "r" }]);
  assert.equal(rc.session, null);
  ws.recv({ type: "error", code: "bad_field", room: "r", message: "still" });
  assert.deepEqual(ws.take(), [], "no second retry");
  assert.equal(room.joined, false);
  rc.close();
});

test("a message that is not an object throws TypeError and leaves nothing behind", async () => {
  const { rc, room, ws } = await joined();
  assert.throws(() => room.publish("text", { ack: true }), TypeError);
  assert.throws(() => room.publish([1, 2]), TypeError);
  assert.equal(rc._pending.size, 0);
  assert.deepEqual(ws.take(), []);
  rc.close();
});

test("conflation as roomcast sends it: one notice in the first dropped message's place, naming later ids too", async () => {
  const { rc, room, ws } = await joined("r", { conflate: true }, {}, { conflateGrace: 20 });
  const got = [], gaps = [];
  room.on("message", (m) => got.push(m.msg_id));
  room.on("gap", (g) => gaps.push(g));
  ws.recv(msg(1));
  ws.recv({ type: "conflated", room: "r", msg_ids: [2, 5, 6] });
  for (const id of [3, 4, 7, 8]) ws.recv(msg(id));
  await sleep(60);
  assert.deepEqual(got, [1, 3, 4, 7, 8]);
  assert.deepEqual(gaps, []);
  assert.equal(room.conflated, 3);
  rc.close();
});

test("a list of URLs: each lost connection or failed attempt moves to the next, round robin", async () => {
  FakeWS.all = [];
  const rc = new RoomcastClient(["ws://a/", "ws://b/", "ws://c/"],
                                { WebSocket: FakeWS, minDelay: 5, maxDelay: 10 });
  assert.deepEqual(rc.urls, ["ws://a/", "ws://b/", "ws://c/"]);
  const opens = [], tries = [];
  rc.on("open", (o) => opens.push(o));
  rc.on("reconnecting", (r) => tries.push(r.url));
  const room = rc.join("r");
  await tick();
  let ws = FakeWS.last();
  assert.equal(ws.url, "ws://a/");
  ws.open();
  assert.deepEqual(opens, [{ reconnect: false, url: "ws://a/" }]);
  ws.take();
  ws.recv({ type: "joined", room: "r", client_id: 7, last_msg_id: 0, epoch: "e1", session: "s".repeat(32) });
  ws.recv(msg(1));
  ws.drop();                                   // node a died
  await sleep(30);
  ws = FakeWS.last();
  assert.equal(ws.url, "ws://b/");
  ws.drop();                                   // node b refuses: on to c
  await sleep(30);
  ws = FakeWS.last();
  assert.equal(ws.url, "ws://c/");
  ws.open();
  assert.equal(rc.url, "ws://c/");
  assert.equal(rc.urlIndex, 2);
  assert.deepEqual(opens[1], { reconnect: true, url: "ws://c/" });
  const [j] = ws.take();                       // the rejoin recovers exactly as with one URL
  assert.deepEqual([j.type, j.since, j.epoch, j.session], ["join", 1, "e1", "s".repeat(32)]);
  ws.drop();
  await sleep(30);
  assert.equal(FakeWS.last().url, "ws://a/", "after the last URL comes the first");
  assert.deepEqual(tries, ["ws://b/", "ws://c/", "ws://a/"]);
  assert.equal(room.lastMsgId, 1);
  rc.close();
});

test("URLs: opts.urls when url is null; an empty list or a non-string throws TypeError", () => {
  const rc = new RoomcastClient(null, { WebSocket: FakeWS, urls: ["ws://x/"], connect: false });
  assert.equal(rc.url, "ws://x/");
  assert.throws(() => new RoomcastClient([], { WebSocket: FakeWS }), TypeError);
  assert.throws(() => new RoomcastClient(["ws://x/", 5], { WebSocket: FakeWS }), TypeError);
  assert.throws(() => new RoomcastClient(undefined, { WebSocket: FakeWS }), TypeError);
});
