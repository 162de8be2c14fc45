// node_server.mjs — the Node.js peer for the roomcast benchmark, on the `ws` package.
//
// The same room protocol subset as roomcast (docs/protocol.md): join -> joined {room,
// client_id, last_msg_id}; leave -> left; any other object is published to the sender's room
// with "room" (when absent), "client_id" and the room's "msg_id" (from 1) appended, and goes to
// every member, sender included. It is written the way a competent Node developer would write
// it, not as a straw man: the broadcast text is serialised once and sent as one Buffer to every
// member, permessage-deflate is off (as in roomcast), and a member whose unsent bytes pass
// --max-pending is dropped (ws would otherwise buffer without bound), with the keepalive from
// the ws README.
//
//   node bench/peers/node_server.mjs --bind 127.0.0.1 --port 0
//   -> stderr: "node-peer: listening on http://127.0.0.1:PORT/"
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const host = opt('--bind', '127.0.0.1');
const port = Number(opt('--port', '8765'));
const maxPending = Number(opt('--max-pending', String(1 << 20)));
const pingInterval = Number(opt('--ping-interval', '5')) * 1000;

const RESERVED = new Set(['joined', 'left', 'error', 'ack']);
const rooms = new Map(); // name -> { name, members: Set<ws>, msgId }
let nextClientId = 0;

const send = (ws, obj) => ws.send(JSON.stringify(obj));
const error = (ws, code, message) => send(ws, { type: 'error', code, message });

function leave(ws, room) {
  room.members.delete(ws);
  ws.rooms.delete(room);
  if (room.members.size === 0) rooms.delete(room.name);
}

function publish(ws, msg) {
  let room;
  if (Object.prototype.hasOwnProperty.call(msg, 'room')) {
    room = rooms.get(msg.room);
    if (!room || !ws.rooms.has(room)) return error(ws, 'not_member', 'not a member of that room');
  } else if (ws.rooms.size === 1) {
    room = ws.rooms.values().next().value;
    msg.room = room.name;
  } else {
    return ws.rooms.size === 0
      ? error(ws, 'not_member', 'not in any room')
      : error(ws, 'missing_field', 'publish from several rooms needs "room"');
  }
  delete msg.client_id;
  delete msg.msg_id;
  msg.client_id = ws.clientId;
  msg.msg_id = ++room.msgId;
  const data = Buffer.from(JSON.stringify(msg));
  for (const m of room.members) {
    if (m.bufferedAmount > maxPending) {
      // A reader that does not keep up: cut it off rather than buffer for it forever.
      m.terminate();
      continue;
    }
    m.send(data, { binary: false });
  }
}

const wss = new WebSocketServer({ host, port, maxPayload: 1 << 20, perMessageDeflate: false,
                                  backlog: 4096 });

wss.on('connection', (ws) => {
  ws.clientId = ++nextClientId;
  ws.rooms = new Set();
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('message', (data, isBinary) => {
    ws.isAlive = true;
    if (isBinary) return error(ws, 'bad_binary', 'binary messages are not supported here');
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return error(ws, 'bad_json', 'the text is not valid JSON');
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg))
      return error(ws, 'not_object', 'a message must be a JSON object');
    if (msg.type === 'join' || msg.type === 'leave') {
      const name = msg.room;
      if (name === undefined) return error(ws, 'missing_field', 'room is required');
      if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 255 ||
          name.includes('\0'))
        return error(ws, 'bad_field', 'bad room name');
      let room = rooms.get(name);
      if (msg.type === 'join') {
        if (!room) {
          room = { name, members: new Set(), msgId: 0 };
          rooms.set(name, room);
        }
        room.members.add(ws);
        ws.rooms.add(room);
        return send(ws, { type: 'joined', room: name, client_id: ws.clientId,
                          last_msg_id: room.msgId });
      }
      if (!room) return error(ws, 'no_such_room', 'no such room');
      if (!ws.rooms.has(room)) return error(ws, 'not_member', 'not a member of that room');
      leave(ws, room);
      return send(ws, { type: 'left', room: name });
    }
    if (RESERVED.has(msg.type)) return error(ws, 'reserved_type', 'reserved type');
    publish(ws, msg);
  });
  ws.on('close', () => {
    for (const room of [...ws.rooms]) leave(ws, room);
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  const a = wss.address();
  process.stderr.write(`node-peer: listening on http://${a.address}:${a.port}/\n`);
});

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, pingInterval);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    clearInterval(heartbeat);
    for (const ws of wss.clients) ws.close(1001);
    wss.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
