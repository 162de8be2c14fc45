// permessage-deflate with the npm `ws` client (issue 17): every perMessageDeflate option
// combination ws can offer, room broadcasts compressed once and inflated by ws, compressed
// messages from ws (also fragmented), a decompression bomb closed with 1009, and a client that
// offers what roomcast must decline.
//
//   cd tests/node && npm ci && ROOMCAST_BIN=../../build/sanitize/roomcast node --test deflate.test.mjs

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import zlib from 'node:zlib';
import net from 'node:net';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(process.env.ROOMCAST_BIN ?? path.join(HERE, '../../build/sanitize/roomcast'));
const LISTEN_RE = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//;

function startServer(args = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['--bind', '127.0.0.1', '--port', '0', '--no-netsync', ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(stderr)); }, 10000);
    const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = LISTEN_RE.exec(stderr);
      if (m && timer) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({
          port,
          url: `ws://127.0.0.1:${port}/`,
          async stop() {
            proc.kill('SIGTERM');
            const r = await exited;
            if (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr))
              throw new Error(`roomcast exited ${r.code}\n${stderr.slice(-3000)}`);
          },
        });
      }
    });
  });
}

// A ws client with a message queue.
function open(url, pmd) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: pmd });
    const c = { ws, queue: [], waiters: [] };
    ws.on('message', (data, isBinary) => {
      const m = isBinary ? data : data.toString();
      const w = c.waiters.shift();
      if (w) w(m); else c.queue.push(m);
    });
    c.closed = new Promise((res) => ws.on('close', (code) => res(code)));
    c.next = () => (c.queue.length ? Promise.resolve(c.queue.shift())
      : new Promise((res) => c.waiters.push(res)));
    c.json = async () => JSON.parse(await c.next());
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
}

function pose(i, pad = 0) {
  return JSON.stringify({ type: 'pose', player: `p${i}`, x: 1.25 * i, y: -3.5, z: 7,
    rot: [0, 0.7071, 0, 0.7071], vel: [0.1, 0, -0.2], anim: 'run', pad: '.'.repeat(pad) });
}

describe('permessage-deflate with ws', () => {
  let srv;
  before(async () => { srv = await startServer(['--ws-deflate-threshold', '64']); });
  after(async () => { await srv.stop(); });

  const combos = [];
  for (const serverNoContextTakeover of [false, true])
    for (const clientNoContextTakeover of [false, true])
      for (const serverMaxWindowBits of [undefined, 9, 13, 15])
        for (const clientMaxWindowBits of [undefined, true, 9, 15])
          combos.push({ serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits,
            clientMaxWindowBits, threshold: 0 });

  for (const pmd of combos) {
    test(`room round trip with ${JSON.stringify(pmd)}`, async () => {
      const room = `ws-${crypto.randomBytes(4).toString('hex')}`;
      const a = await open(srv.url, pmd);
      const b = await open(srv.url, pmd);
      assert.match(a.ws.extensions, /^permessage-deflate/);
      for (const c of [a, b]) {
        c.ws.send(JSON.stringify({ type: 'join', room }));
        assert.equal((await c.json()).type, 'joined');
      }
      for (let i = 0; i < 5; i++) {
        a.ws.send(pose(i, 300));
        assert.equal((await b.json()).player, `p${i}`);
      }
      // fragmented compressed message from ws
      const big = JSON.stringify({ type: 'blob', text: 'héllo '.repeat(5000) });
      a.ws.send(big.slice(0, 1000), { fin: false });
      a.ws.send(big.slice(1000), { fin: true });
      assert.equal((await b.json()).text, 'héllo '.repeat(5000));
      a.ws.close(); b.ws.close();
      await Promise.all([a.closed, b.closed]);
    });
  }

  test('a compressed frame is shared: raw bytes identical for two deflate members', async () => {
    const room = 'shared';
    const a = await open(srv.url, true);
    a.ws.send(JSON.stringify({ type: 'join', room }));
    await a.json();
    // two raw sockets offering deflate, reading the frame bytes as sent
    const raw = await Promise.all([0, 1].map(() => rawDeflateMember(srv.port, room)));
    a.ws.send(pose(7, 500));
    const frames = await Promise.all(raw.map((r) => r.nextText()));
    assert.equal(frames[0].rsv1, true);
    assert.deepEqual(frames[0].payload, frames[1].payload);
    const text = zlib.inflateRawSync(Buffer.concat([frames[0].payload, Buffer.from([0, 0, 0xff, 0xff])]),
      { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString();
    assert.equal(JSON.parse(text).player, 'p7');
    raw.forEach((r) => r.sock.destroy());
    a.ws.close();
    await a.closed;
  });
});

describe('decompression bomb and declined offers', () => {
  let srv;
  before(async () => { srv = await startServer(['--max-message-size', '1048576']); });
  after(async () => { await srv.stop(); });

  test('a bomb from ws is closed with 1009', async () => {
    const c = await open(srv.url.replace(/\/$/, '/echo'), { threshold: 0 });
    c.ws.send(Buffer.alloc(50 << 20)); // 50 MB of zeros, ~50 KB compressed
    assert.equal(await c.closed, 1009);
  });

  test('server_max_window_bits=8 is declined: ws falls back to plain', async () => {
    const c = await open(srv.url.replace(/\/$/, '/echo'), { serverMaxWindowBits: 8 });
    assert.equal(c.ws.extensions, '');
    c.ws.send('plain');
    assert.equal(await c.next(), 'plain');
    c.ws.close();
    await c.closed;
  });
});

describe('--ws-deflate off', () => {
  let srv;
  before(async () => { srv = await startServer(['--ws-deflate', 'off']); });
  after(async () => { await srv.stop(); });
  test('ws connects without compression', async () => {
    const c = await open(srv.url.replace(/\/$/, '/echo'), true);
    assert.equal(c.ws.extensions, '');
    c.ws.send('x'.repeat(10000));
    assert.equal(await c.next(), 'x'.repeat(10000));
    c.ws.close();
    await c.closed;
  });
});

// A raw TCP member that offers deflate, joins room and returns its text frames unparsed.
function rawDeflateMember(port, room) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const frames = [];
    const waiters = [];
    const key = crypto.randomBytes(16).toString('base64');
    sock.on('error', reject);
    sock.on('connect', () => sock.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n`));
    const member = {
      sock,
      nextText: () => (frames.length ? Promise.resolve(frames.shift())
        : new Promise((res) => waiters.push(res))),
    };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        assert.match(buf.slice(0, end).toString(), /Sec-WebSocket-Extensions: permessage-deflate/);
        buf = buf.slice(end + 4);
        upgraded = true;
        const msg = Buffer.from(JSON.stringify({ type: 'join', room }));
        const mask = crypto.randomBytes(4);
        const hdr = Buffer.from([0x81, 0x80 | msg.length]);
        sock.write(Buffer.concat([hdr, mask, Buffer.from(msg.map((b, i) => b ^ mask[i % 4]))]));
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const f = { rsv1: (buf[0] & 0x40) !== 0, opcode: buf[0] & 0xf, payload: buf.slice(off, off + len) };
        buf = buf.slice(off + len);
        if (f.opcode !== 1) continue;
        const plain = f.rsv1 ? null : f.payload.toString();
        if (plain && JSON.parse(plain).type === 'joined') { resolve(member); continue; }
        const w = waiters.shift();
        if (w) w(f); else frames.push(f);
      }
    });
  });
}
