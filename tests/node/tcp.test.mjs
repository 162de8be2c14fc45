// roomcast's raw TCP port (docs/tcp.md) with node's own `net` module, run by node's test runner:
//
//   cd tests/node && ROOMCAST_BIN=../../build/sanitize/roomcast node --test
//
// Line mode (newline-delimited JSON): join, publish, receive in order, next to a WebSocket
// member (npm ws). Framed mode (the \0RC\x01 preamble, then [len u32 LE][opcode][payload]): a
// binary round trip. The server is started with `--tcp-port 0` and stopped with SIGTERM,
// asserting exit status 0 (under ASan a leak makes it non-zero).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(process.env.ROOMCAST_BIN ?? path.join(HERE, '../../build/sanitize/roomcast'));
const HTTP_RE = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//;
const TCP_RE = /roomcast: tcp listening on 127\.0\.0\.1:(\d+)\n/;
const HELP = spawnSync(BIN, ['--help'], { encoding: 'utf8', timeout: 10000 });
const EXTRA = `${HELP.stdout ?? ''}${HELP.stderr ?? ''}`.includes('--no-netsync') ? ['--no-netsync'] : [];

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

function startServer(args = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['--bind', '127.0.0.1', '--port', '0', '--tcp-port', '0', ...EXTRA, ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let started = false;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`roomcast did not print its listening lines in 10 s:\n${stderr}`));
    }, 10000);
    const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    exited.then(({ code }) => {
      if (!started) { clearTimeout(timer); reject(new Error(`roomcast exited with ${code}:\n${stderr}`)); }
    });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      stderr += d;
      const http = HTTP_RE.exec(stderr);
      if (started || !http) return;
      const tcp = TCP_RE.exec(stderr);   // printed before the http line
      clearTimeout(timer);
      started = true;
      if (!tcp) { proc.kill('SIGKILL'); reject(new Error(`no tcp listening line:\n${stderr}`)); return; }
      resolve({
        port: Number(http[1]),
        tcpPort: Number(tcp[1]),
        get stderr() { return stderr; },
        async stop() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          const r = await withTimeout(exited, 20000, 'roomcast exit after SIGTERM')
            .catch((e) => { proc.kill('SIGKILL'); throw e; });
          if (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr)) {
            throw new Error(`roomcast exited with ${r.code} ${r.signal}\n${stderr.split('\n').slice(-60).join('\n')}`);
          }
        },
      });
    });
  });
}

// A queue of parsed items from a socket: `parse(buffer)` returns [item, bytesUsed] or null.
class Stream {
  static open(port, parse) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(new Stream(sock, parse)));
      sock.once('error', reject);
    });
  }

  constructor(sock, parse) {
    this.sock = sock;
    this.parse = parse;
    this.buf = Buffer.alloc(0);
    this.items = [];
    this.waiters = [];
    this.ended = false;
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const r = this.parse(this.buf);
        if (!r) break;
        this.buf = this.buf.subarray(r[1]);
        const w = this.waiters.shift();
        if (w) w.resolve(r[0]); else this.items.push(r[0]);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
    });
  }

  next(ms = 10000) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.ended) return Promise.reject(new Error('connection closed'));
    return withTimeout(new Promise((resolve, reject) => this.waiters.push({ resolve, reject })), ms, 'next item');
  }

  write(data) { this.sock.write(data); }
  end() { this.sock.end(); }
  destroy() { this.sock.destroy(); }
}

function lineParser(buf) {
  const i = buf.indexOf(0x0a);
  if (i < 0) return null;
  return [JSON.parse(buf.subarray(0, i).toString('utf8')), i + 1];
}

const PREAMBLE = Buffer.from([0x00, 0x52, 0x43, 0x01]);

// Framed mode: the 4-byte preamble echo first, then [len u32 LE][opcode][payload] frames.
function framedParser() {
  let preamble = false;
  return (buf) => {
    if (!preamble) {
      if (buf.length < 4) return null;
      preamble = true;
      return [{ preamble: buf.subarray(0, 4) }, 4];
    }
    if (buf.length < 5) return null;
    const n = buf.readUInt32LE(0);
    if (buf.length < 5 + n) return null;
    return [{ op: buf[4], payload: Buffer.from(buf.subarray(5, 5 + n)) }, 5 + n];
  };
}

function frame(op, payload) {
  const head = Buffer.alloc(5);
  head.writeUInt32LE(payload.length, 0);
  head[4] = op;
  return Buffer.concat([head, payload]);
}

function envelope(room, payload) {
  const r = Buffer.from(room, 'utf8');
  return Buffer.concat([Buffer.from([r.length]), r, payload]);
}

function parseBinary(buf) {
  const roomLen = buf.readUInt8(16);
  return {
    msgId: Number(buf.readBigUInt64LE(0)), clientId: Number(buf.readBigUInt64LE(8)),
    room: buf.subarray(17, 17 + roomLen).toString('utf8'), payload: buf.subarray(17 + roomLen),
  };
}

function wsOpen(port) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const queue = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const m = isBinary ? { binary: Buffer.from(data) } : JSON.parse(data.toString('utf8'));
      const w = waiters.shift();
      if (w) w(m); else queue.push(m);
    });
    ws.once('open', () => resolve({
      ws,
      send: (o) => ws.send(typeof o === 'string' ? o : JSON.stringify(o)),
      next: (ms = 10000) => (queue.length ? Promise.resolve(queue.shift())
        : withTimeout(new Promise((r) => waiters.push(r)), ms, 'ws message')),
    }));
    ws.once('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------

describe('raw TCP port with node net', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('line mode: join, publish, every member receives in order', async () => {
    const room = `node-tcp-${process.pid}`;
    const a = await Stream.open(srv.tcpPort, lineParser);
    const b = await Stream.open(srv.tcpPort, lineParser);
    const w = await wsOpen(srv.port);
    a.write(`${JSON.stringify({ type: 'join', room })}\n`);
    const ja = await a.next();
    assert.equal(ja.type, 'joined');
    assert.equal(ja.last_msg_id, 0);
    assert.equal(typeof ja.epoch, 'string');
    b.write(`${JSON.stringify({ type: 'join', room })}\r\n`);
    assert.equal((await b.next()).type, 'joined');
    w.send({ type: 'join', room });
    assert.equal((await w.next()).type, 'joined');

    // 200 publishes in one write (plus an ack on the last), and some from the WebSocket member
    const N = 200;
    let blob = '';
    for (let i = 0; i < N; i++) {
      blob += `${JSON.stringify(i === N - 1 ? { type: 'n', seq: i, ack: 'last' } : { type: 'n', seq: i })}\n`;
    }
    a.write(blob);
    for (let i = 0; i < 5; i++) w.send({ type: 'w', seq: i });

    for (const [name, c] of [['a', a], ['b', b], ['ws', w]]) {
      let nextA = 0, nextW = 0, ack = null;
      for (let id = 1; id <= N + 5; id++) {
        let m = await c.next();
        if (m.type === 'ack') { ack = m; m = await c.next(); }
        assert.equal(m.msg_id, id, `${name}: msg_id ${m.msg_id}, expected ${id}`);
        assert.equal(m.room, room);
        if (m.type === 'n') {
          assert.equal(m.client_id, ja.client_id);
          assert.equal(m.seq, nextA++);
        } else {
          assert.equal(m.type, 'w');
          assert.equal(m.seq, nextW++);
        }
      }
      assert.equal(nextA, N);
      assert.equal(nextW, 5);
      if (name === 'a') {
        if (!ack) ack = await a.next();
        assert.equal(ack.type, 'ack');
        assert.equal(ack.ref, 'last');
        assert.equal(ack.room, room);
      } else {
        assert.equal(ack, null, `${name} got someone else's ack`);
      }
    }
    a.destroy();
    b.destroy();
    w.ws.close();
  });

  test('framed mode: a binary round trip, seen by a line member as base64', async () => {
    const room = `node-framed-é-${process.pid}`;
    const f = await Stream.open(srv.tcpPort, framedParser());
    f.write(PREAMBLE);
    assert.deepEqual((await f.next()).preamble, PREAMBLE);
    f.write(frame(0x1, Buffer.from(JSON.stringify({ type: 'join', room }))));
    const jf = JSON.parse((await f.next()).payload.toString('utf8'));
    assert.equal(jf.type, 'joined');
    const line = await Stream.open(srv.tcpPort, lineParser);
    line.write(`${JSON.stringify({ type: 'join', room })}\n`);
    assert.equal((await line.next()).type, 'joined');

    const payload = Buffer.alloc(5000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    f.write(frame(0x2, envelope(room, payload)));
    const got = await f.next();
    assert.equal(got.op, 0x2);
    const p = parseBinary(got.payload);
    assert.equal(p.msgId, 1);
    assert.equal(p.clientId, jf.client_id);
    assert.equal(p.room, room);
    assert.deepEqual(p.payload, payload);
    const asLine = await line.next();
    assert.deepEqual(asLine, { binary: payload.toString('base64'), room, client_id: jf.client_id, msg_id: 1 });

    // ping: a pong with the same payload; close: answered with the same code, then EOF
    f.write(frame(0x9, Buffer.from('node')));
    assert.deepEqual(await f.next(), { op: 0xA, payload: Buffer.from('node') });
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    f.write(frame(0x8, code));
    const closeFrame = await f.next();
    assert.equal(closeFrame.op, 0x8);
    assert.equal(closeFrame.payload.readUInt16BE(0), 1000);
    await withTimeout(new Promise((r) => (f.ended ? r() : f.sock.once('close', r))), 10000, 'server closes');
    line.destroy();
  });
});
