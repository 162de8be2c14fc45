// roomcast.js — a dependency-free client for roomcast rooms (docs/protocol.md), an ES module
// for browsers and Node. Served by roomcast at /roomcast.js. The API reference is
// docs/client.md; TypeScript declarations are in roomcast.d.ts beside this file.
//
//   import { RoomcastClient } from "/roomcast.js";
//   const rc = new RoomcastClient("ws://127.0.0.1:8080/");
//   const lobby = rc.join("lobby", { onMessage: (m) => console.log(m.msg_id, m) });
//   lobby.publish({ type: "chat", text: "hello" });
//   const { msg_id } = await lobby.publish({ type: "chat", text: "sure?" }, { ack: true });
//
// In Node 22+ the global WebSocket is used; in older Node pass one:
//   import WebSocket from "ws";  new RoomcastClient(url, { WebSocket });
//
// What it does for you:
// - connects in a microtask after the constructor returns (or when connect() is called, with
//   { connect: false }), so listeners attached right after construction see every event;
// - reconnects by itself after the connection is lost, waiting min(maxDelay, minDelay * 2^n)
//   scaled by a random factor in [0.5, 1) between attempts (jitter, so a restarted server is not
//   hit by every client at the same instant); it stops for good when the server closes it as
//   replaced by a newer connection of its session, or as kicked;
// - takes a list of URLs (nodes of one cluster, docs/cluster.md): after a lost connection or a
//   failed attempt it tries the next one, so a client of a node that died moves to another and
//   recovers there with since/epoch;
// - keeps the "session" of "joined" and presents it on the first join of every new connection,
//   so the server gives it its client_id back and recognises the idempotency keys it resends;
// - rejoins every room after a reconnect, sending "since" (the last msg_id it saw) and "epoch"
//   (from the room's last "joined"), so a server that keeps history replays what was missed;
//   "recovered": false in the answer means it could not, and the gap is reported;
// - checks that every room's msg_ids arrive in order without gaps, drops duplicates, and
//   reports gaps through onGap / the "gap" event; ids the server names in a "conflated" notice,
//   and ids a "state" snapshot stands for, are not gaps;
// - publishes with { ack: true } return a Promise of the server's ack; keyed publishes
//   (idempotency keys) are resent after a reconnect until acknowledged, and the server drops
//   the copies it has already sequenced;
// - queues publishes made while disconnected (up to maxQueued per room) and sends them once
//   the room is joined again;
// - routes the server's errors to the room they are about ("room") and to the publish they
//   answer ("ref"), and keeps a room's members up to date with presence: true;
// - with { token } or { getToken } sends {"type":"auth","token":...} first on every connection
//   (docs/auth.md), and with getToken sends a fresh token before the last one's exp.

const OPEN = 1;
const REPLACED = /^replaced/;   // close 1008 reasons after which reconnecting would be wrong
const KICKED = /^kicked/;

/** A tiny event emitter (browsers and Node alike, no dependency). A handler that throws does
 *  not stop the others: its exception is rethrown in a microtask (so it is still reported). */
class Emitter {
  constructor() { this._handlers = new Map(); }
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) { this._handlers.get(event)?.delete(fn); }
  once(event, fn) {
    const off = this.on(event, (...args) => { off(); fn(...args); });
    return off;
  }
  emit(event, ...args) {
    for (const fn of [...(this._handlers.get(event) ?? [])]) {
      try { fn(...args); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }
}

/** The Error a publish's Promise rejects with: a server error (code from docs/protocol.md
 *  "Errors") or one of the client's own (local: true): room_closed, queue_full,
 *  connection_lost, closed, replaced, kicked. */
export class RoomcastError extends Error {
  constructor(err) {
    super(err.message ?? err.code);
    this.name = "RoomcastError";
    this.code = err.code;
    this.room = err.room ?? null;
    this.ref = err.ref ?? null;
    this.local = err.local === true;
    this.error = err;          // the error object as the server (or the client) made it
  }
}

// Join options sent to the server, and the handler options mapped to events.
const HANDLERS = [["onMessage", "message"], ["onJoined", "joined"], ["onGap", "gap"],
                  ["onLeft", "left"], ["onError", "error"], ["onState", "state"],
                  ["onPresence", "presence"], ["onConflated", "conflated"], ["onAck", "ack"]];

function addHandlers(target, opts) {
  for (const [k, ev] of HANDLERS) if (typeof opts?.[k] === "function") target.on(ev, opts[k]);
}

/** One joined room: its order state and callbacks. Obtained from RoomcastClient.join(). */
export class Room extends Emitter {
  constructor(client, name, opts = {}) {
    super();
    this.client = client;
    this.name = name;
    // What every join of this room asks for (the first join()'s options).
    this.options = {
      history: opts.history ?? 0,
      state: opts.state === true,
      conflate: opts.conflate === true,
      presence: opts.presence === true,
    };
    this.lastMsgId = 0;        // last msg_id delivered to the application (or covered by a
                               // state snapshot or a conflated notice)
    this.epoch = null;         // from "joined": identifies the history lastMsgId belongs to
    this.joined = false;       // "joined" received on the current connection
    this.closed = false;       // left, or closed by the server
    this.gaps = 0;             // gaps reported so far
    this.conflated = 0;        // msg_ids the server conflated away (conflate: true)
    this.recovered = null;     // "recovered" of the last joined (null: no since was sent)
    this.replayFrom = null;    // "replay_from" of the last joined (history: N)
    this.members = null;       // presence: Set of the members' client_ids (null: unknown, or
                               // a room above the server's --presence-limit)
    this.memberCount = null;   // presence: how many members
    this._queue = [];          // publishes waiting for the room to be joined (entries)
    this._unacked = [];        // keyed/acked publishes sent on this connection, not yet acked
    this._joinSent = false;    // a join is on its way on the current connection
    this._joinSession = false; // ... and it carries the session
    this._seen = false;        // joined at least once: rejoins send since/epoch
    this._joinLast = 0;        // last_msg_id of the current join (the end of any replay)
    this._ignoreState = false; // the current join recovered: its state snapshot is redundant
    this._skip = new Set();    // msg_ids announced as conflated that have not been passed yet
    this._holes = [];          // conflate: missing ranges {from, to, at} not yet explained
    this._holeTimer = null;
    addHandlers(this, opts);
  }

  /** Publishes a JSON object (or binary data: ArrayBuffer / typed array) to this room.
   *  Without opts.ack: returns true when sent now, false when queued for after the (re)join or
   *  refused (an "error" event says why: room_closed for a room that was left; closed,
   *  replaced or kicked for a client that stopped).
   *  With opts.ack: returns a Promise of { msg_id, duplicate, room, ref, key }, rejected with a
   *  RoomcastError. opts.key: an idempotency key (a string, or true for a new one); a publish
   *  with ack gets a new key unless key is false. Keyed publishes are resent after a reconnect
   *  until acknowledged. Binary data takes neither ack nor key (TypeError). */
  publish(msg, opts) { return this.client._publish(this, msg, opts); }

  /** Leaves the room; no message of it is delivered afterwards. */
  leave() { this.client._leave(this); }

  /** Publishes waiting for the room to be (re)joined. */
  get queued() { return this._queue.length; }
}

export class RoomcastClient extends Emitter {
  /**
   * @param {string|string[]} url  ws:// or wss:// URL of a roomcast server ("/" path), or a list
   *                                of URLs of nodes sharing rooms (--redis): the first is tried
   *                                first, each lost connection or failed attempt moves to the next
   * @param {object} [opts]
   * @param {string[]} [opts.urls]  the list of URLs, when url is null or undefined
   * @param {Function} [opts.WebSocket]  WebSocket implementation (default: globalThis.WebSocket)
   * @param {boolean} [opts.connect=true]  connect by itself (in a microtask); false: call connect()
   * @param {boolean} [opts.reconnect=true]  reconnect after the connection is lost
   * @param {number} [opts.minDelay=250]  first reconnect delay, ms
   * @param {number} [opts.maxDelay=10000]  largest reconnect delay, ms
   * @param {number} [opts.maxQueued=1000]  publishes kept per room while disconnected
   * @param {boolean} [opts.resume=true]  send since/epoch when rejoining
   * @param {string} [opts.session]  a session token from an earlier client to present
   * @param {number} [opts.conflateGrace=1000]  ms a missing msg_id of a conflate room may wait
   *                                            for its "conflated" notice before it is a gap
   * @param {string} [opts.token]  a connection token (JWT), sent as {"type":"auth"} first
   * @param {Function} [opts.getToken]  () => token or Promise of one: asked on every connection
   *                                    and refreshBefore ms before the token's exp
   * @param {number} [opts.refreshBefore=30000]  ms before exp to refresh (at most half the
   *                                             token's remaining life)
   */
  constructor(url, opts = {}) {
    super();
    const urls = url == null ? opts.urls : Array.isArray(url) ? url : [url];
    if (!Array.isArray(urls) || urls.length === 0 || !urls.every((u) => typeof u === "string")) {
      throw new TypeError("roomcast: url must be a URL or a non-empty list of URLs (or opts.urls)");
    }
    this.urls = [...urls];     // every URL this client may use, in the order they are tried
    this.urlIndex = 0;         // index in urls of the one in use (or being tried)
    this.url = this.urls[0];   // that URL
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) {
      throw new Error("roomcast: no WebSocket implementation (pass opts.WebSocket, e.g. from 'ws')");
    }
    this.reconnect = opts.reconnect ?? true;
    this.minDelay = opts.minDelay ?? 250;
    this.maxDelay = opts.maxDelay ?? 10000;
    this.maxQueued = opts.maxQueued ?? 1000;
    this.resume = opts.resume ?? true;
    this.conflateGrace = opts.conflateGrace ?? 1000;
    this.token = opts.token ?? null;
    this.getToken = opts.getToken ?? null;
    this.refreshBefore = opts.refreshBefore ?? 30000;
    this.user = null;          // the user of the server's "authenticated" answer
    this.tokenExp = null;      // and its exp, seconds since the epoch
    this._authPending = false; // waiting for getToken: joins wait too
    this._refreshTimer = null;
    this.rooms = new Map();    // name -> Room
    this.clientId = null;      // client_id from "joined"; kept across reconnects by the session
    this.session = opts.session ?? null;  // session token of "joined", presented again on the
                                          // first join of every new connection
    this.state = "idle";       // idle | connecting | open | reconnecting | closed
    this.closeInfo = null;     // { code, reason, by } of the close that stopped the client
    this.attempt = 0;          // failed attempts since the last good connection
    this.reconnects = 0;       // successful reconnects so far
    this._ws = null;
    this._timer = null;
    this._closedByUser = false;
    this._opened = false;      // a connection has been open at least once
    this._identified = false;  // a "joined" arrived on the current connection
    this._sessionSent = false; // the current connection's first join carried the session
    this._pending = new Map(); // ref -> entry of every publish waiting for its ack
    this._leaving = new Map(); // name -> Room left by leave(), until "left" answers
    this._nextRef = 1;
    this._keySeq = 0;
    this._keyPrefix = randomHex(6);
    if (opts.connect !== false) queueMicrotask(() => { if (this.state === "idle") this._connect(); });
  }

  /** Starts connecting (when idle, or closed by close()); returns the client. */
  connect() {
    if (this.state !== "idle" && this.state !== "closed") return this;
    this._closedByUser = false;
    this.closeInfo = null;
    this.attempt = 0;
    this._connect();
    return this;
  }

  /** Resolves once the connection is open (immediately when it is); rejects when the client
   *  is closed for good first. */
  ready() {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "closed") {
      return Promise.reject(new RoomcastError({ code: this.closeInfo?.by ?? "closed", local: true,
                                                message: "roomcast: the client is closed" }));
    }
    return new Promise((resolve, reject) => {
      const offs = [
        this.on("open", () => { offs.forEach((f) => f()); resolve(); }),
        this.on("state", (s) => {
          if (s !== "closed") return;
          offs.forEach((f) => f());
          reject(new RoomcastError({ code: this.closeInfo?.by ?? "closed", local: true,
                                     message: "roomcast: the client was closed" }));
        }),
      ];
    });
  }

  /** Joins a room. opts: handlers { onMessage(msg, room), onJoined(info, room), onGap(gap, room),
   *  onLeft(info, room), onError(err, room), onState(messages, room, info),
   *  onPresence(event, room), onConflated(info, room), onAck(ack, room) } and what to ask the
   *  server for: { history: N, state: true, conflate: true, presence: true }. Joining a room
   *  already joined returns the same Room (its handlers added, its options unchanged). */
  join(name, opts) {
    let room = this.rooms.get(name);
    if (room) {
      addHandlers(room, opts);
      // A join the server refused (too_many_rooms, rate_limited, banned...) is tried again.
      if (this.state === "open" && !room.joined && !room._joinSent) this._sendJoin(room);
      return room;
    }
    room = new Room(this, name, opts);
    this.rooms.set(name, room);
    if (this.state === "open") this._sendJoin(room);
    return room;
  }

  /** A new idempotency key: unique to this client object (random prefix + counter). The
   *  server keeps keys per session, so the same key after a reconnect names the same message. */
  newKey() { return `${this._keyPrefix}-${++this._keySeq}`; }

  /** Closes the connection for good (no reconnect). Publishes waiting for their ack are
   *  rejected (code "closed") and queued ones dropped. connect() starts again. */
  close() {
    this._closedByUser = true;
    clearTimeout(this._timer);
    const ws = this._ws;
    this._ws = null;
    if (ws) this._connectionLost();
    if (ws) this.emit("close", { code: 1000, reason: "bye", willReconnect: false });
    this._stop("closed", { code: 1000, reason: "bye" });
    try { ws?.close(1000, "bye"); } catch { /* already closing */ }
  }

  // ---- internals ------------------------------------------------------------------------

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  _connect() {
    this._setState(this.attempt === 0 && !this._opened ? "connecting" : "reconnecting");
    this.url = this.urls[this.urlIndex];
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this._scheduleReconnect(e);
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._identified = false;
    this._sessionSent = false;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      const wasReconnect = this._opened;
      this._opened = true;
      this.attempt = 0;
      this._setState("open");
      if (wasReconnect) this.reconnects++;
      this.emit("open", { reconnect: wasReconnect, url: this.url });
      this._authThenJoin(ws);
    };
    ws.onmessage = (ev) => { if (this._ws === ws) this._onMessage(ev.data); };
    ws.onerror = () => { /* onclose follows with the details */ };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._connectionLost();
      const info = { code: ev.code, reason: ev.reason ?? "" };
      // A refused (4001) or expired (4002) fixed token would be refused again: stop. With
      // getToken the next connection asks for a fresh one.
      const tokenEnd = (info.code === 4001 || info.code === 4002) && !this.getToken
        ? (info.code === 4001 ? "unauthenticated" : "token_expired") : null;
      // One session is one member: the server closed this connection because a newer one
      // presented its session (or an operator kicked it). Reconnecting would take the session
      // back from the newer connection, which would do the same: a loop. Stop instead.
      const by = tokenEnd ? tokenEnd
        : info.code === 1008 && REPLACED.test(info.reason) ? "replaced"
        : info.code === 1008 && KICKED.test(info.reason) ? "kicked"
        : this._closedByUser || !this.reconnect ? "closed" : null;
      this.emit("close", { ...info, willReconnect: by === null });
      if (by) {
        this._stop(by, info);
        if (by !== "closed") this.emit(by, info);
        return;
      }
      this._scheduleReconnect();
    };
  }

  // The token goes first (the server handles messages in order, so the joins after it are
  // checked as this user), then every room is (re)joined.
  _authThenJoin(ws) {
    const go = (tok) => {
      this._authPending = false;
      if (this._ws !== ws) return;
      if (tok) ws.send(JSON.stringify({ type: "auth", token: tok }));
      for (const room of this.rooms.values()) this._sendJoin(room);
    };
    if (!this.getToken) { go(this.token); return; }
    this._authPending = true;
    Promise.resolve().then(() => this.getToken()).then(go, (e) => {
      this._authPending = false;
      this.emit("error", { type: "error", code: "get_token_failed", local: true,
                           message: `roomcast: getToken failed: ${e}` });
      if (this._ws === ws) ws.close(4001, "no token");
    });
  }

  _onAuthenticated(msg) {
    this.user = typeof msg.user === "string" ? msg.user : null;
    this.tokenExp = typeof msg.exp === "number" ? msg.exp : null;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    this.emit("authenticated", { user: this.user, exp: this.tokenExp, clientId: msg.client_id });
    if (!this.getToken || this.tokenExp == null) return;
    const ws = this._ws;
    const left = this.tokenExp * 1000 - Date.now();
    const wait = Math.max(0, left - Math.min(this.refreshBefore, left / 2));
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      if (this._ws !== ws) return;
      Promise.resolve().then(() => this.getToken()).then((tok) => {
        if (this._ws === ws && ws.readyState === OPEN && tok) {
          ws.send(JSON.stringify({ type: "auth", token: tok }));
        }
      }, (e) => this.emit("error", { type: "error", code: "get_token_failed", local: true,
                                     message: `roomcast: getToken failed: ${e}` }));
    }, wait);
  }

  // The connection is gone: rooms are no longer joined; keyed publishes not acknowledged go
  // back to the front of their room's queue (resent after the rejoin; the server drops what
  // it had already sequenced), ack-only publishes (key: false) cannot be resent safely and
  // are rejected.
  _connectionLost() {
    this._identified = false;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    for (const room of [...this.rooms.values(), ...this._leaving.values()]) {
      room.joined = false;
      room._joinSent = false;
      const resend = [];
      for (const e of room._unacked.splice(0)) {
        if (e.key != null && !room.closed) resend.push(e);
        else this._fail(e, { code: "connection_lost", message: "the connection was lost before the ack" });
      }
      room._queue.unshift(...resend);
    }
    for (const room of this._leaving.values()) this._failRoom(room, "room_closed");
    this._leaving.clear();
  }

  // Stops for good: state closed, every waiting publish rejected with `by`.
  _stop(by, info) {
    this.closeInfo = { ...info, by };
    for (const room of this.rooms.values()) {
      this._failRoom(room, by);
      this._clearHoles(room);
    }
    this._setState("closed");
  }

  // With several URLs every retry goes to the next one, whether the connection was lost or the
  // attempt failed: the node is presumed gone, and the backoff (counted across all URLs, so a
  // cluster that is down entirely is not hammered) stays the same as with one URL.
  _scheduleReconnect(err) {
    if (this._closedByUser) return;
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** Math.min(this.attempt, 16));
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.attempt++;
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this._setState("reconnecting");
    this.emit("reconnecting", { attempt: this.attempt, delay, error: err,
                                url: this.urls[this.urlIndex] });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _send(data) {
    if (!this._ws || this._ws.readyState !== OPEN) return false;
    this._ws.send(data);
    return true;
  }

  _sendJoin(room) {
    if (this._authPending) return;  // sent with every room once the token is
    const msg = { type: "join", room: room.name };
    // The session goes in the first join of a connection only: the server refuses it once the
    // connection has an identity (bad_field).
    room._joinSession = false;
    if (this.session && !this._identified && !this._sessionSent) {
      msg.session = this.session;
      this._sessionSent = true;
      room._joinSession = true;
    }
    if (this.resume && room._seen) {
      msg.since = room.lastMsgId;
      if (room.epoch != null) msg.epoch = room.epoch;
    }
    const o = room.options;
    if (o.history > 0) msg.history = o.history;
    if (o.state) msg.state = true;
    if (o.conflate) msg.conflate = true;
    if (o.presence) msg.presence = true;
    if (this._send(JSON.stringify(msg))) room._joinSent = true;
  }

  _publish(room, msg, opts = {}) {
    const binary = msg instanceof ArrayBuffer || ArrayBuffer.isView(msg);
    const wantAck = opts.ack === true;
    const key = opts.key === true || (opts.key == null && wantAck) ? this.newKey()
      : typeof opts.key === "string" ? opts.key : null;
    if (binary && (wantAck || key != null)) {
      throw new TypeError("roomcast: binary messages carry neither ack nor idempotency key");
    }
    // Refused, not thrown: a room that was left, or a client that stopped for good (close(),
    // replaced, kicked) until connect().
    const refused = room.closed ? ["room_closed", `room '${room.name}' was left; join it again to publish`]
      : this.state === "closed" ? [this.closeInfo?.by ?? "closed", `the client is closed (${this.closeInfo?.by ?? "closed"}); connect() again to publish`]
      : null;
    if (refused) {
      const err = { type: "error", code: refused[0], room: room.name, local: true, message: refused[1] };
      this._emitError(err, room);
      return wantAck ? Promise.reject(new RoomcastError(err)) : false;
    }
    // A keyed publish asks for an ack even when the caller did not: the ack is how the client
    // knows it need not resend after a reconnect.
    const ref = wantAck || key != null ? this._nextRef++ : null;
    const entry = { room, data: encodeOutgoing(room.name, msg, ref, key), ref, key,
                    resolve: null, reject: null };
    let promise = null;
    if (ref != null) {
      this._pending.set(ref, entry);
      if (wantAck) promise = new Promise((res, rej) => { entry.resolve = res; entry.reject = rej; });
    }
    if (room.joined && this._send(entry.data)) {
      if (entry.ref != null) room._unacked.push(entry);
      return promise ?? true;
    }
    room._queue.push(entry);
    while (room._queue.length > this.maxQueued) {
      const dropped = room._queue.shift();
      const err = { type: "error", code: "queue_full", room: room.name, local: true,
                    message: `more than ${this.maxQueued} publishes queued for '${room.name}': the oldest was dropped` };
      this._fail(dropped, err);
      this._emitError(err, room);
    }
    return promise ?? false;
  }

  // Rejects one entry's promise (if any) and forgets it.
  _fail(entry, err) {
    if (entry.ref != null) this._pending.delete(entry.ref);
    entry.reject?.(new RoomcastError({ type: "error", room: entry.room.name, ref: entry.ref,
                                       local: true, ...err }));
  }

  // Fails everything a room still holds (queued and unacknowledged) with `code`.
  _failRoom(room, code) {
    const msg = { code, message: `roomcast: ${code.replace("_", " ")} before the ack` };
    for (const e of room._queue.splice(0)) this._fail(e, msg);
    for (const e of room._unacked.splice(0)) this._fail(e, msg);
  }

  _leave(room) {
    if (room.closed) return;
    room.closed = true;
    this.rooms.delete(room.name);
    this._clearHoles(room);
    const wasJoining = room.joined || room._joinSent;
    room.joined = false;
    // Queued publishes are never sent; sent ones are sequenced before the leave, so their acks
    // (or errors) still come: they are failed only when "left" arrives.
    for (const e of room._queue.splice(0)) this._fail(e, { code: "room_closed", message: "left before it was sent" });
    if (wasJoining && this._send(JSON.stringify({ type: "leave", room: room.name }))) {
      this._leaving.set(room.name, room);
    } else {
      this._failRoom(room, "room_closed");
    }
  }

  _onMessage(data) {
    if (typeof data !== "string") {
      this._onBinary(data);
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { this.emit("error", { type: "error", code: "invalid_json", local: true, message: "invalid JSON from the server", data }); return; }
    if (msg === null || typeof msg !== "object") return;
    const room = msg.room != null ? this.rooms.get(msg.room) : undefined;
    switch (msg.type) {  // types no client may publish (reserved_type)
      case "joined": return this._onJoined(room, msg);
      case "left": return this._onLeft(msg);
      case "error": return this._onError(msg);
      case "ack": return this._onAck(room, msg);
      case "authenticated": return this._onAuthenticated(msg);
    }
    // Any other type with a msg_id is a room message; the server's notices have none.
    if (msg.msg_id != null) {
      if (room) this._deliver(room, msg.msg_id, msg);
      else this.emit("message", msg);
      return;
    }
    switch (msg.type) {
      case "state": return room && this._onState(room, msg);
      case "conflated": return room && this._onConflated(room, msg);
      case "presence": return room && this._onPresence(room, msg);
      default: this.emit("message", msg);
    }
  }

  _onJoined(room, msg) {
    if (!room) return;  // a room left before its joined arrived
    const prev = { session: this.session, clientId: this.clientId };
    this._identified = true;
    if (msg.session) this.session = msg.session;
    if (msg.client_id != null) this.clientId = msg.client_id;
    if (prev.session !== this.session || prev.clientId !== this.clientId) {
      this.emit("session", { session: this.session, clientId: this.clientId, previous: prev });
    }
    const had = room.lastMsgId;
    const last = msg.last_msg_id ?? 0;
    // Where the stream of this join starts: after `since` when recovered, at replay_from when
    // the server replays history, otherwise after last_msg_id.
    const start = msg.replay_from ?? last + 1;
    const sameEpoch = room.epoch == null || msg.epoch == null || msg.epoch === room.epoch;
    if (room._seen && msg.recovered === true && sameEpoch) {
      // The server replays had+1 .. last_msg_id right after this message: nothing lost.
    } else if (room._seen && (!sameEpoch || last < had)) {
      // A new history (room recreated, server restarted without its data): ids start over.
      // Nothing can be said about what was missed under the old epoch; count afresh.
      this._clearHoles(room);
      this._gap(room, { from: had + 1, to: null, reason: "new_epoch" });
      room.lastMsgId = start - 1;
    } else if (room._seen) {
      if (start > had + 1) this._gap(room, { from: had + 1, to: start - 1, reason: "not_recovered" });
      // a history replay overlapping what was seen: the overlap is dropped as duplicates
      room.lastMsgId = Math.max(had, start - 1);
    } else {
      room.lastMsgId = start - 1;
    }
    if (msg.epoch != null) room.epoch = msg.epoch;
    room._seen = true;
    room._joinSent = false;
    room._joinLast = last;
    room._ignoreState = msg.recovered === true;
    room._skip.clear();
    room.recovered = msg.recovered ?? null;
    room.replayFrom = msg.replay_from ?? null;
    room.joined = true;
    if (Array.isArray(msg.members)) {
      room.members = new Set(msg.members);
      room.memberCount = room.members.size;
    } else if (msg.member_count != null) {
      room.members = null;
      room.memberCount = msg.member_count;
    }
    room.emit("joined", msg, room);
    this.emit("joined", msg, room);
    // presence: the member list of a (re)join as one event, so a view fed by onPresence alone
    // forgets the members that left while this client was away
    if (room.options.presence && (msg.members || msg.member_count != null)) {
      const sync = { type: "presence", room: room.name, event: "sync",
                     members: room.members ? [...room.members] : null, member_count: room.memberCount };
      room.emit("presence", sync, room);
      this.emit("presence", sync, room);
    }
    // The queue in order; a send that fails (the connection is going) leaves it and the rest
    // queued, in order, for the next join.
    while (room._queue.length && this._send(room._queue[0].data)) {
      const e = room._queue.shift();
      if (e.ref != null) room._unacked.push(e);
    }
  }

  _onLeft(msg) {
    // The answer to leave() goes to the Room that was left (a new Room of the same name may
    // already be joining); "left" with a reason is the server closing the room.
    let room = msg.reason ? undefined : this._leaving.get(msg.room);
    if (room) {
      this._leaving.delete(msg.room);
    } else {
      room = this.rooms.get(msg.room);
      if (!room) { this.emit("left", msg); return; }
      room.joined = false;
      room.closed = true;
      this.rooms.delete(room.name);
      this._clearHoles(room);
    }
    this._failRoom(room, "room_closed");
    room.emit("left", msg, room);
    this.emit("left", msg, room);
  }

  _onError(msg) {
    let room = msg.room != null ? (this.rooms.get(msg.room) ?? this._leaving.get(msg.room)) : undefined;
    const entry = msg.ref != null ? this._pending.get(msg.ref) : undefined;
    if (entry) {
      room ??= entry.room;
      const i = entry.room._unacked.indexOf(entry);
      if (i >= 0) entry.room._unacked.splice(i, 1);
      this._pending.delete(entry.ref);
      entry.reject?.(new RoomcastError(msg));
    } else if (room && !room.joined && room._joinSent) {
      // The server refused the join (too_many_rooms, room_limit, rate_limited, banned...): the
      // room stays unjoined; join() again retries, and so does every reconnect.
      room._joinSent = false;
      if (!this._identified) this._sessionSent = false;
      // A session the server cannot read (a stored token gone bad) would refuse every join:
      // drop it and join as a new member.
      if (msg.code === "bad_field" && room._joinSession && this.state === "open") {
        this.session = null;
        this._sendJoin(room);
      }
    } else if (room && this._leaving.get(room.name) === room) {
      this._leaving.delete(room.name);     // a leave the server did not take
      this._failRoom(room, "room_closed");
    }
    this._emitError(msg, room);
  }

  _emitError(err, room) {
    room?.emit("error", err, room);
    this.emit("error", err, room);
  }

  _onAck(room, msg) {
    const entry = this._pending.get(msg.ref);
    if (entry) {
      this._pending.delete(msg.ref);
      room ??= entry.room;
      const i = entry.room._unacked.indexOf(entry);
      if (i >= 0) entry.room._unacked.splice(i, 1);
      entry.resolve?.({ msg_id: msg.msg_id, duplicate: msg.duplicate === true, room: msg.room,
                        ref: msg.ref, key: entry.key });
    }
    room?.emit("ack", msg, room);
    this.emit("ack", msg, room);
  }

  // The room's state (the latest message of each state_key), sent after joined. Its
  // last_msg_id is where the live stream goes on; when this join replays messages (recovery or
  // history) those carry the order check instead. After a recovered rejoin it is redundant
  // (the replay brought everything) and is not delivered.
  _onState(room, msg) {
    if (room._ignoreState) return;
    const replaying = room.lastMsgId < room._joinLast;
    if (!replaying && msg.last_msg_id > room.lastMsgId) room.lastMsgId = msg.last_msg_id;
    room.emit("state", msg.messages ?? [], room, msg);
  }

  // msg_ids the server dropped for newer messages of the same key: not gaps. Ids still ahead
  // are skipped when passed; ids already passed clear their holes.
  _onConflated(room, msg) {
    const ids = Array.isArray(msg.msg_ids) ? msg.msg_ids : [];
    for (const id of ids) {
      if (id > room.lastMsgId) room._skip.add(id);
      else this._unhole(room, id);
    }
    room.conflated += ids.length;
    room.emit("conflated", msg, room);
    this.emit("conflated", msg, room);
  }

  _onPresence(room, msg) {
    const m = room.members;
    if (msg.event === "join") m?.add(msg.client_id);
    else if (msg.event === "leave") m?.delete(msg.client_id);
    else if (msg.event === "batch") {
      for (const id of msg.joined ?? []) m?.add(id);
      for (const id of msg.left ?? []) m?.delete(id);
    }
    if (msg.member_count != null) room.memberCount = msg.member_count;
    else if (m) room.memberCount = m.size;
    room.emit("presence", msg, room);
    this.emit("presence", msg, room);
  }

  // Order check: msg_id must be exactly lastMsgId + 1. Lower ids are duplicates (a replay that
  // overlaps what was already delivered) and are dropped; higher ids mean messages were lost,
  // unless the server said it conflated them.
  _deliver(room, id, msg) {
    if (id <= room.lastMsgId) return;
    if (id !== room.lastMsgId + 1) this._missing(room, room.lastMsgId + 1, id - 1);
    room.lastMsgId = id;
    room.emit("message", msg, room);
    this.emit("message", msg, room);
  }

  // from..to were not received: drop the ids announced as conflated, and report the rest as
  // gaps — at once, or in a conflate room after conflateGrace ms: roomcast puts a "conflated"
  // notice where the dropped message was, but the protocol only promises it before the newer
  // message of its key, which may come after later messages of other keys.
  _missing(room, from, to) {
    const ranges = [];
    if (room._skip.size === 0) {
      ranges.push({ from, to });
    } else {
      let start = from;
      for (const id of [...room._skip].filter((x) => x <= to).sort((a, b) => a - b)) {
        room._skip.delete(id);
        if (id < start) continue;
        if (id > start) ranges.push({ from: start, to: id - 1 });
        start = id + 1;
      }
      if (start <= to) ranges.push({ from: start, to });
    }
    for (const r of ranges) {
      if (!room.options.conflate) { this._gap(room, { ...r, reason: "gap" }); continue; }
      room._holes.push({ ...r, at: Date.now() });
    }
    if (room._holes.length && !room._holeTimer) this._armHoles(room);
  }

  _armHoles(room) {
    room._holeTimer = setTimeout(() => {
      room._holeTimer = null;
      const now = Date.now();
      const due = room._holes.filter((h) => now - h.at >= this.conflateGrace);
      room._holes = room._holes.filter((h) => now - h.at < this.conflateGrace);
      for (const h of due) this._gap(room, { from: h.from, to: h.to, reason: "gap" });
      if (room._holes.length) this._armHoles(room);
    }, this.conflateGrace);
  }

  _unhole(room, id) {
    const i = room._holes.findIndex((h) => h.from <= id && id <= h.to);
    if (i < 0) return;
    const h = room._holes[i];
    const parts = [];
    if (h.from < id) parts.push({ from: h.from, to: id - 1, at: h.at });
    if (id < h.to) parts.push({ from: id + 1, to: h.to, at: h.at });
    room._holes.splice(i, 1, ...parts);
  }

  _clearHoles(room) {
    clearTimeout(room._holeTimer);
    room._holeTimer = null;
    room._holes = [];
    room._skip.clear();
  }

  _gap(room, gap) {
    room.gaps++;
    const g = { room: room.name, ...gap };
    room.emit("gap", g, room);
    this.emit("gap", g, room);
  }

  _onBinary(buf) {
    const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf)
      : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (bytes.length < 17) return;
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const msgId = Number(v.getBigUint64(0, true));
    const clientId = Number(v.getBigUint64(8, true));
    const rl = bytes[16];
    const name = new TextDecoder().decode(bytes.subarray(17, 17 + rl));
    const msg = { binary: true, msg_id: msgId, client_id: clientId, room: name,
                  payload: bytes.subarray(17 + rl) };
    const room = this.rooms.get(name);
    if (room) this._deliver(room, msgId, msg);
  }
}

// A JSON object is sent as text with its room named (and the ack ref and idempotency key when
// given); binary data gets the envelope [room_len][room][payload] of docs/protocol.md.
function encodeOutgoing(roomName, msg, ref, key) {
  if (msg instanceof ArrayBuffer || ArrayBuffer.isView(msg)) {
    const payload = msg instanceof ArrayBuffer ? new Uint8Array(msg)
      : new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    const name = new TextEncoder().encode(roomName);
    if (name.length > 255) throw new Error("roomcast: room name longer than 255 bytes");
    const out = new Uint8Array(1 + name.length + payload.length);
    out[0] = name.length;
    out.set(name, 1);
    out.set(payload, 1 + name.length);
    return out;
  }
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    throw new TypeError("roomcast: a message is a JSON object or binary data");
  }
  const out = { ...msg, room: roomName };
  if (ref != null) out.ack = ref;
  if (key != null) out.idempotency_key = key;
  return JSON.stringify(out);
}

function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(b);
  else for (let i = 0; i < bytes; i++) b[i] = Math.floor(Math.random() * 256);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

export default RoomcastClient;
