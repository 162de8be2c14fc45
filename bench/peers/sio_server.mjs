// sio_server.mjs — the Socket.IO peer for the cluster benchmark (bench/cluster.sh), with
// @socket.io/redis-adapter: the well-known way Node users scale Socket.IO rooms over Redis.
//
// Rooms are Socket.IO rooms and a publish is io.to(room).emit(): nothing hand-made. The room
// protocol subset of node_server.mjs travels as the one argument of an "m" event both ways
// (the generator's --transport sio): {type:"join",room} -> socket.join(room), then
// {type:"joined",room,client_id,last_msg_id:0}; {type:"leave",room} -> {type:"left",room}; any
// other object is the sender's publish: "room" (when absent) and "client_id" are added and it
// goes to every member of the room on every node, sender included, with io.to(room).emit.
//
// What Socket.IO does not give, and this peer does not fake: a msg_id. There is no per-room
// sequence across nodes (each node emits its own clients' messages at once and the others'
// when they come back through Redis), so members on different nodes may see two senders'
// messages in different orders; each sender's own messages keep their order. The generator
// checks exactly that in this mode (rooms.c: delivery_unsequenced).
//
// Socket.IO is set up the way one would for this load: websocket transport only (no HTTP
// long-polling first), permessage-deflate and HTTP compression off (as in roomcast), the client
// files not served. Without --redis the default in-memory adapter runs (one node alone).
//
//   node bench/peers/sio_server.mjs --bind 127.0.0.1 --port 0 [--redis redis://127.0.0.1:6379]
//   -> stderr: "sio-peer: listening on http://127.0.0.1:PORT/"
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const host = opt('--bind', '127.0.0.1');
const port = Number(opt('--port', '8765'));
const redisUrl = opt('--redis', '');

const RESERVED = new Set(['joined', 'left', 'error', 'ack']);
// Client ids unique across nodes with high probability, as roomcast numbers them in Redis mode:
// a random 20-bit base times 2^32.
let nextClientId = Math.floor(Math.random() * 2 ** 20) * 2 ** 32;

const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 1 << 20,
});

let pubClient, subClient;
if (redisUrl) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  pubClient = createClient({ url: redisUrl });
  subClient = pubClient.duplicate();
  for (const c of [pubClient, subClient])
    c.on('error', (e) => process.stderr.write(`sio-peer: redis: ${e.message}\n`));
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

const error = (socket, code, message) => socket.emit('m', { type: 'error', code, message });

io.on('connection', (socket) => {
  const clientId = ++nextClientId;
  socket.on('m', (msg) => {
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg))
      return error(socket, 'not_object', 'a message must be a JSON object');
    if (msg.type === 'join' || msg.type === 'leave') {
      const name = msg.room;
      if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 255 ||
          name.includes('\0'))
        return error(socket, 'bad_field', 'bad room name');
      if (msg.type === 'join') {
        socket.join(name);
        return socket.emit('m', { type: 'joined', room: name, client_id: clientId,
                                  last_msg_id: 0 });
      }
      if (!socket.rooms.has(name)) return error(socket, 'not_member', 'not a member of that room');
      socket.leave(name);
      return socket.emit('m', { type: 'left', room: name });
    }
    if (RESERVED.has(msg.type)) return error(socket, 'reserved_type', 'reserved type');
    let room = msg.room;
    if (room === undefined) {
      // socket.rooms always holds the socket's own id; the one other entry is its room.
      if (socket.rooms.size !== 2)
        return error(socket, 'missing_field', 'publish needs "room" unless in exactly one room');
      for (const r of socket.rooms) if (r !== socket.id) room = r;
      msg.room = room;
    } else if (!socket.rooms.has(room)) {
      return error(socket, 'not_member', 'not a member of that room');
    }
    delete msg.msg_id;
    msg.client_id = clientId;
    io.to(room).emit('m', msg);
  });
});

httpServer.listen(port, host, () => {
  const a = httpServer.address();
  process.stderr.write(`sio-peer: listening on http://${a.address}:${a.port}/` +
                       (redisUrl ? ` (redis adapter: ${redisUrl})` : '') + '\n');
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    setTimeout(() => process.exit(0), 1000).unref();
    io.close();
    await Promise.allSettled([pubClient?.quit(), subClient?.quit()]);
    process.exit(0);
  });
}
