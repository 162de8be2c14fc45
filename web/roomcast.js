// roomcast.js — a dependency-free client for roomcast rooms (docs/protocol.md), an ES module
// for browsers and Node. Served by roomcast at /roomcast.js.
//
//   import { RoomcastClient } from "/roomcast.js";
//   const rc = new RoomcastClient("ws://127.0.0.1:8080/");
//   const lobby = rc.join("lobby", { onMessage: (m) => console.log(m.msg_id, m) });
//   lobby.publish({ type: "chat", text: "hello" });
//
// In Node 22+ the global WebSocket is used; in older Node pass one:
//   import WebSocket from "ws";  new RoomcastClient(url, { WebSocket });
//
// What it does for you:
// - reconnects by itself after the connection is lost, waiting min(maxDelay, minDelay * 2^n)
//   scaled by a random factor in [0.5, 1) between attempts (jitter, so a restarted server is not
//   hit by every client at the same instant);
// - rejoins every room after a reconnect, sending "since" (the last msg_id it saw) and "epoch"
//   (from the room's last "joined"), so a server that keeps history replays what was missed;
//   "recovered": false in the answer means it could not, and the gap is reported; it also
//   presents the "session" the server gave it, so idempotency keys it resends are recognised;
// - checks that every room's msg_ids arrive in order without gaps, drops duplicates, and
//   reports gaps through onGap / the "gap" event;
// - queues publishes made while disconnected (up to maxQueued per room) and sends them once
//   the room is joined again.

const OPEN = 1;

/** A tiny event emitter (browsers and Node alike, no dependency). */
class Emitter {
  constructor() { this._handlers = new Map(); }
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) { this._handlers.get(event)?.delete(fn); }
  emit(event, ...args) {
    for (const fn of this._handlers.get(event) ?? []) {
      try { fn(...args); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }
}

/** One joined room: its order state and callbacks. Obtained from RoomcastClient.join(). */
export class Room extends Emitter {
  constructor(client, name, handlers) {
    super();
    this.client = client;
    this.name = name;
    this.lastMsgId = 0;        // last msg_id delivered to the application
    this.epoch = null;         // from "joined": identifies the history lastMsgId belongs to
    this.joined = false;       // "joined" received on the current connection
    this.closed = false;       // left, or closed by the server
    this.gaps = 0;             // gaps seen so far
    this._queue = [];          // publishes waiting for the room to be joined
    for (const [k, ev] of [["onMessage", "message"], ["onJoined", "joined"], ["onGap", "gap"],
                           ["onLeft", "left"]]) {
      if (handlers?.[k]) this.on(ev, handlers[k]);
    }
  }

  /** Publishes a JSON object (or binary data: ArrayBuffer / typed array) to this room.
   *  Returns true when sent now, false when queued for after the reconnect. */
  publish(msg) { return this.client._publish(this, msg); }

  /** Leaves the room; no message of it is delivered afterwards. */
  leave() { this.client._leave(this); }
}

export class RoomcastClient extends Emitter {
  /**
   * @param {string} url  ws:// or wss:// URL of a roomcast server ("/" path)
   * @param {object} [opts]
   * @param {Function} [opts.WebSocket]  WebSocket implementation (default: globalThis.WebSocket)
   * @param {boolean} [opts.reconnect=true]  reconnect after the connection is lost
   * @param {number} [opts.minDelay=250]  first reconnect delay, ms
   * @param {number} [opts.maxDelay=10000]  largest reconnect delay, ms
   * @param {number} [opts.maxQueued=1000]  publishes kept per room while disconnected
   * @param {boolean} [opts.resume=true]  send since/epoch when rejoining
   */
  constructor(url, opts = {}) {
    super();
    this.url = url;
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) {
      throw new Error("roomcast: no WebSocket implementation (pass opts.WebSocket, e.g. from 'ws')");
    }
    this.reconnect = opts.reconnect ?? true;
    this.minDelay = opts.minDelay ?? 250;
    this.maxDelay = opts.maxDelay ?? 10000;
    this.maxQueued = opts.maxQueued ?? 1000;
    this.resume = opts.resume ?? true;
    this.rooms = new Map();    // name -> Room
    this.clientId = null;      // this connection's client_id (from "joined")
    this.session = null;       // the session token of "joined", presented again after a
                               // reconnect so that resent idempotency keys are recognised
    this.state = "idle";       // idle | connecting | open | reconnecting | closed
    this.attempt = 0;          // failed attempts since the last good connection
    this.reconnects = 0;       // successful reconnects so far
    this._ws = null;
    this._timer = null;
    this._closedByUser = false;
    this._connect();
  }

  /** Resolves once the connection is open (immediately when it is). */
  ready() {
    if (this.state === "open") return Promise.resolve();
    return new Promise((resolve) => { const off = this.on("open", () => { off(); resolve(); }); });
  }

  /** Joins a room. handlers: { onMessage(msg, room), onJoined(info, room), onGap(gap, room),
   *  onLeft(info, room) }. Joining a room already joined returns the same Room. */
  join(name, handlers) {
    let room = this.rooms.get(name);
    if (room) {
      for (const [k, ev] of [["onMessage", "message"], ["onJoined", "joined"], ["onGap", "gap"],
                             ["onLeft", "left"]]) {
        if (handlers?.[k]) room.on(ev, handlers[k]);
      }
      return room;
    }
    room = new Room(this, name, handlers);
    this.rooms.set(name, room);
    if (this.state === "open") this._sendJoin(room);
    return room;
  }

  /** Closes the connection for good (no reconnect). */
  close() {
    this._closedByUser = true;
    clearTimeout(this._timer);
    this._setState("closed");
    try { this._ws?.close(1000, "bye"); } catch { /* already closing */ }
  }

  // ---- internals ------------------------------------------------------------------------

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  _connect() {
    this._setState(this.attempt === 0 && this.reconnects === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this._scheduleReconnect(e);
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    const wasReconnect = this.reconnects > 0 || this.attempt > 0;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this.attempt = 0;
      this._setState("open");
      if (wasReconnect) this.reconnects++;
      this.emit("open", { reconnect: wasReconnect });
      for (const room of this.rooms.values()) this._sendJoin(room);
    };
    ws.onmessage = (ev) => { if (this._ws === ws) this._onMessage(ev.data); };
    ws.onerror = () => { /* onclose follows with the details */ };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this.clientId = null;
      for (const room of this.rooms.values()) room.joined = false;
      this.emit("close", { code: ev.code, reason: ev.reason });
      if (this._closedByUser || !this.reconnect) {
        this._setState("closed");
        return;
      }
      this._scheduleReconnect();
    };
  }

  _scheduleReconnect(err) {
    if (this._closedByUser) return;
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** Math.min(this.attempt, 16));
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.attempt++;
    this._setState("reconnecting");
    this.emit("reconnecting", { attempt: this.attempt, delay, error: err });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _send(data) {
    if (!this._ws || this._ws.readyState !== OPEN) return false;
    this._ws.send(data);
    return true;
  }

  _sendJoin(room) {
    const msg = { type: "join", room: room.name };
    if (this.session) msg.session = this.session;
    if (this.resume && room.lastMsgId > 0) {
      msg.since = room.lastMsgId;
      if (room.epoch != null) msg.epoch = room.epoch;
    }
    this._send(JSON.stringify(msg));
  }

  _publish(room, msg) {
    if (room.closed) throw new Error(`roomcast: room '${room.name}' was left`);
    const data = encodeOutgoing(room.name, msg);
    if (room.joined && this._send(data)) return true;
    room._queue.push(data);
    if (room._queue.length > this.maxQueued) room._queue.shift();
    return false;
  }

  _leave(room) {
    if (room.closed) return;
    room.closed = true;
    this.rooms.delete(room.name);
    this._send(JSON.stringify({ type: "leave", room: room.name }));
  }

  _onMessage(data) {
    if (typeof data !== "string") {
      this._onBinary(data);
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { this.emit("error", { message: "invalid JSON from server", data }); return; }
    const room = msg.room != null ? this.rooms.get(msg.room) : undefined;
    switch (msg.type) {
      case "joined": return this._onJoined(room, msg);
      case "left":
        if (room) {
          room.joined = false;
          if (msg.reason) { room.closed = true; this.rooms.delete(room.name); }
          room.emit("left", msg, room);
        }
        this.emit("left", msg);
        return;
      case "error":
        this.emit("error", msg);
        return;
      default:
        if (room && msg.msg_id != null) this._deliver(room, msg.msg_id, msg);
        else this.emit("message", msg);
    }
  }

  _onJoined(room, msg) {
    if (!room) return;
    this.clientId = msg.client_id;
    if (msg.session) this.session = msg.session;
    const had = room.lastMsgId;
    const sameEpoch = room.epoch == null || msg.epoch == null || msg.epoch === room.epoch;
    if (had > 0) {
      if (msg.recovered === true && sameEpoch) {
        // The server replays had+1 .. last_msg_id right after this message: nothing lost.
      } else if (!sameEpoch || msg.last_msg_id < had) {
        // A new history (server restarted without its data): ids start over. Nothing can be
        // said about what was missed under the old epoch; start counting afresh.
        this._gap(room, { from: had + 1, to: null, reason: "new_epoch" });
        room.lastMsgId = msg.last_msg_id;
      } else if (msg.last_msg_id > had) {
        this._gap(room, { from: had + 1, to: msg.last_msg_id, reason: "not_recovered" });
        room.lastMsgId = msg.last_msg_id;
      }
    } else {
      room.lastMsgId = msg.last_msg_id ?? 0;
    }
    if (msg.epoch != null) room.epoch = msg.epoch;
    room.joined = true;
    room.emit("joined", msg, room);
    this.emit("joined", msg, room);
    const queued = room._queue.splice(0);
    for (const data of queued) this._send(data);
  }

  // Order check: msg_id must be exactly lastMsgId + 1. Lower ids are duplicates (a replay that
  // overlaps what was already delivered) and are dropped; higher ids mean messages were lost.
  _deliver(room, id, msg) {
    if (id <= room.lastMsgId) return;
    if (id !== room.lastMsgId + 1) {
      this._gap(room, { from: room.lastMsgId + 1, to: id - 1, reason: "gap" });
    }
    room.lastMsgId = id;
    room.emit("message", msg, room);
    this.emit("message", msg, room);
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

// A JSON object is sent as text with its room named; binary data gets the envelope
// [room_len][room][payload] of docs/protocol.md.
function encodeOutgoing(roomName, msg) {
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
  return JSON.stringify({ ...msg, room: roomName });
}

export default RoomcastClient;
