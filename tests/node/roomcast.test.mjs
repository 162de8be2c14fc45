// roomcast integration tests with the npm `ws` client, run by node's built-in test runner:
//
//   cd tests/node && npm ci && ROOMCAST_BIN=../../build/sanitize/roomcast node --test
//
// Each describe() block starts its own server (`--port 0`, port parsed from stderr) and stops it
// with SIGTERM, asserting exit status 0 (under ASan a leak makes it non-zero).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(process.env.ROOMCAST_BIN ?? path.join(HERE, '../../build/sanitize/roomcast'));
const LISTEN_RE = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//;

// ---------------------------------------------------------------------------------------------
// server process

// Later issues add listeners on fixed ports (NetSync: 5555, 5556, 9999); tests run several
// servers, so those are switched off when the binary has the switch.
const HELP = spawnSync(BIN, ['--help'], { encoding: 'utf8', timeout: 10000 });
const EXTRA = `${HELP.stdout ?? ''}${HELP.stderr ?? ''}`.includes('--no-netsync') ? ['--no-netsync'] : [];

function startServer(args = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['--bind', '127.0.0.1', '--port', '0', ...EXTRA, ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let port = null;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`roomcast did not print its listening line in 10 s:\n${stderr}`));
    }, 10000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = port === null && LISTEN_RE.exec(stderr);
      if (m) {
        port = Number(m[1]);
        clearTimeout(timer);
        resolve(server);
      }
    });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    exited.then(({ code }) => {
      if (port === null) {
        clearTimeout(timer);
        reject(new Error(`roomcast exited with ${code} before listening:\n${stderr}`));
      }
    });
    const server = {
      proc,
      get port() { return port; },
      get url() { return `ws://127.0.0.1:${port}/`; },
      get stderr() { return stderr; },
      exited,
      async stats() {
        const res = await fetch(`http://127.0.0.1:${port}/api/stats`);
        assert.equal(res.status, 200);
        return res.json();
      },
      // SIGTERM (unless already signalled) and assert a clean exit
      async stop(signal = 'SIGTERM') {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
        let r;
        try {
          r = await withTimeout(exited, 20000, `roomcast exit after ${signal}`);
        } catch (e) {
          proc.kill('SIGKILL');
          throw new Error(`roomcast did not exit within 20 s of ${signal}\n${tail(stderr)}`);
        }
        if (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr)) {
          throw new Error(`roomcast exited with code ${r.code} signal ${r.signal}\n${tail(stderr)}`);
        }
      },
    };
  });
}

function tail(s, n = 60) { return s.split('\n').slice(-n).join('\n'); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

// ---------------------------------------------------------------------------------------------
// client helpers

// A ws client with an async message queue and the close code/reason recorded.
class Client {
  static open(url, opts = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024, ...opts });
      const c = new Client(ws);
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => {
        reject(Object.assign(new Error(`unexpected response ${res.statusCode}`),
          { statusCode: res.statusCode }));
      });
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((res) => ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      res({ code, reason: reason.toString() });
      for (const w of this.waiters.splice(0)) w.reject(new Error(`closed ${code} ${reason}`));
    }));
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      let msg;
      if (isBinary) {
        msg = { binary: true, data };
      } else {
        const text = data.toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        msg = { binary: false, text, json };
      }
      const w = this.waiters.shift();
      if (w) w.resolve(msg); else this.queue.push(msg);
    });
  }

  next(ms = 10000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeCode !== undefined) return Promise.reject(new Error(`closed ${this.closeCode}`));
    return withTimeout(new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
      ms, 'next message');
  }

  async nextJson(ms) {
    const m = await this.next(ms);
    assert.equal(m.binary, false, 'expected a text message');
    assert.notEqual(m.json, undefined, `expected JSON, got ${m.text}`);
    return m.json;
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  async join(room) {
    this.send({ type: 'join', room });
    const j = await this.nextJson();
    assert.equal(j.type, 'joined');
    assert.equal(j.room, room);
    return j;
  }

  close(code, reason) { this.ws.close(code, reason); return this.closed; }
}

function envelope(room, payload) {
  const r = Buffer.from(room, 'utf8');
  return Buffer.concat([Buffer.from([r.length]), r, payload]);
}

function parseBinary(buf) {
  const msgId = buf.readBigUInt64LE(0);
  const clientId = buf.readBigUInt64LE(8);
  const roomLen = buf.readUInt8(16);
  return {
    msgId: Number(msgId), clientId: Number(clientId),
    room: buf.subarray(17, 17 + roomLen).toString('utf8'),
    payload: buf.subarray(17 + roomLen),
  };
}

// ---------------------------------------------------------------------------------------------

describe('rooms under concurrent load', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('many rooms x many clients publishing at once: every message, in order', async () => {
    const ROOMS = 10, PER_ROOM = 8, MSGS = 50;
    const total = PER_ROOM * MSGS;
    const members = [];
    for (let r = 0; r < ROOMS; r++) {
      const room = `node-storm-${process.pid}-${r}`;
      for (let c = 0; c < PER_ROOM; c++) {
        const cl = await Client.open(srv.url);
        const j = await cl.join(room);
        assert.equal(j.last_msg_id, 0);
        members.push({ cl, room, id: j.client_id });
      }
    }
    assert.equal(new Set(members.map((m) => m.id)).size, members.length, 'client ids unique');
    const before = await srv.stats();

    await withTimeout(Promise.all(members.map(async ({ cl, room, id }) => {
      // publish: text and binary interleaved, room named or implied
      (async () => {
        for (let i = 0; i < MSGS; i++) {
          if (i % 3 === 2) {
            cl.ws.send(envelope(i % 2 ? room : '', Buffer.from(JSON.stringify({ seq: i }))));
          } else {
            const m = { type: 'load', seq: i, pad: 'n'.repeat(30) };
            if (i % 2) m.room = room;
            cl.send(m);
          }
          if (i % 10 === 0) await sleep(0);
        }
      })();
      // receive: msg_ids 1..total consecutive, each sender's seq in order
      const nextSeq = new Map();
      for (let expect = 1; expect <= total; expect++) {
        const m = await cl.next(20000);
        let msgId, sender, seq, mroom;
        if (m.binary) {
          const b = parseBinary(m.data);
          ({ msgId } = b); sender = b.clientId; mroom = b.room;
          seq = JSON.parse(b.payload.toString()).seq;
        } else {
          msgId = m.json.msg_id; sender = m.json.client_id; seq = m.json.seq; mroom = m.json.room;
        }
        assert.equal(mroom, room);
        assert.equal(msgId, expect, `client ${id} in ${room}: msg_id ${msgId}, expected ${expect}`);
        const want = nextSeq.get(sender) ?? 0;
        assert.equal(seq, want, `client ${id}: sender ${sender} seq ${seq}, expected ${want}`);
        nextSeq.set(sender, seq + 1);
      }
      assert.equal(nextSeq.size, PER_ROOM);
      for (const v of nextSeq.values()) assert.equal(v, MSGS);
    })), 120000, 'storm');

    const afterStats = await srv.stats();
    assert.equal(afterStats.broadcasts - before.broadcasts, ROOMS * total);
    await Promise.all(members.map(({ cl }) => cl.close(1000)));
  });

  test('binary envelope round trip, shared sequence with text', async () => {
    const room = 'node-binary-é';
    const a = await Client.open(srv.url);
    const b = await Client.open(srv.url);
    const ja = await a.join(room);
    await b.join(room);
    const payload = Buffer.alloc(70000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    a.ws.send(envelope(room, payload));
    a.send({ type: 'between', room });
    a.ws.send(envelope('', Buffer.alloc(0)));
    for (const cl of [a, b]) {
      const m1 = await cl.next();
      assert.equal(m1.binary, true);
      const p = parseBinary(m1.data);
      assert.deepEqual([p.msgId, p.clientId, p.room], [1, ja.client_id, room]);
      assert.equal(m1.data.length, 17 + Buffer.byteLength(room) + payload.length);
      assert.ok(p.payload.equals(payload), 'payload unchanged');
      const m2 = await cl.nextJson();
      assert.deepEqual(m2, { type: 'between', room, client_id: ja.client_id, msg_id: 2 });
      const m3 = await cl.next();
      assert.equal(m3.binary, true);
      const p3 = parseBinary(m3.data);
      assert.deepEqual([p3.msgId, p3.clientId, p3.room, p3.payload.length], [3, ja.client_id, room, 0]);
    }
    // malformed envelope: an error, the connection stays open
    a.ws.send(Buffer.from([200, 0x61]));
    const e = await a.nextJson();
    assert.equal(e.type, 'error');
    assert.equal(e.code, 'bad_binary');
    a.send({ type: 'after', room });
    assert.equal((await a.nextJson()).msg_id, 4);
    await a.close(1000);
    await b.close(1000);
  });

  test('a binary envelope naming a non-UTF-8 room gets a valid (UTF-8) error', async () => {
    // ws validates incoming text: an error frame carrying the raw room bytes would make it
    // fail the connection with 1007
    const c = await Client.open(srv.url);
    c.ws.send(Buffer.from([2, 0xff, 0xfe, 0x70]));
    const e = await c.nextJson();
    assert.equal(e.type, 'error');
    await c.join('node-after-odd-binary');
    await c.close(1000);
  });

  test('echo endpoint returns text and binary unchanged', async () => {
    const e = await Client.open(srv.url.replace(/\/$/, '/echo'));
    e.ws.send('{"not":"parsed"} é');
    assert.equal((await e.next()).text, '{"not":"parsed"} é');
    const bin = Buffer.from([0, 1, 2, 255, 254]);
    e.ws.send(bin);
    const m = await e.next();
    assert.equal(m.binary, true);
    assert.ok(m.data.equals(bin));
    await e.close(1000);
  });

  test('errors keep the connection open', async () => {
    const c = await Client.open(srv.url);
    for (const [text, code] of [['nope', 'bad_json'], ['[1]', 'not_object'],
      ['{"type":"join"}', 'missing_field'], ['{"type":"m"}', 'not_member'],
      ['{"type":"leave","room":"never-there"}', 'no_such_room'],
      ['{"type":"join","room":""}', 'bad_field'], ['{"type":"ack"}', 'reserved_type']]) {
      c.send(text);
      const e = await c.nextJson();
      assert.equal(e.type, 'error', text);
      assert.equal(e.code, code, text);
      assert.equal(typeof e.message, 'string');
    }
    await c.join('node-after-errors');
    await c.close(1000);
  });
});

describe('close codes', () => {
  let srv;
  before(async () => { srv = await startServer(['--max-message-size', '65536']); });
  after(async () => { await srv.stop(); });

  test('client close code is echoed', async () => {
    for (const [code, reason] of [[1000, ''], [4000, 'bye'], [3001, 'é']]) {
      const c = await Client.open(srv.url);
      await c.join('node-close');
      const r = await withTimeout(c.close(code, reason), 10000, 'close');
      assert.equal(r.code, code);
    }
  });

  test('message over --max-message-size: 1009', async () => {
    const c = await Client.open(srv.url);
    await c.join('node-big');
    c.send({ type: 'big', pad: 'x'.repeat(70000) });
    const r = await withTimeout(c.closed, 10000, 'close 1009');
    assert.equal(r.code, 1009);
  });

  test('text that is not UTF-8: 1007', async () => {
    const c = await Client.open(srv.url);
    c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    const r = await withTimeout(c.closed, 10000, 'close 1007');
    assert.equal(r.code, 1007);
  });

  test('others in the room are unaffected by a violator', async () => {
    const ok = await Client.open(srv.url);
    const bad = await Client.open(srv.url);
    await ok.join('node-mixed');
    await bad.join('node-mixed');
    bad.ws.send(Buffer.from([0xc0, 0xaf]), { binary: false });
    assert.equal((await withTimeout(bad.closed, 10000, 'violator closed')).code, 1007);
    ok.send({ type: 'fine' });
    const m = await ok.nextJson();
    assert.equal(m.type, 'fine');
    assert.equal(m.msg_id, 1);
    await ok.close(1000);
  });

  test('stats counted the violations', async () => {
    const st = await srv.stats();
    assert.ok(st.errors.ws_1009 >= 1, JSON.stringify(st.errors));
    assert.ok(st.errors.ws_1007 >= 2, JSON.stringify(st.errors));
  });
});

describe('limits and shutdown', () => {
  test('--max-connections: the next upgrade gets HTTP 503', async () => {
    const srv = await startServer(['--max-connections', '3']);
    try {
      const cs = [];
      for (let i = 0; i < 3; i++) cs.push(await Client.open(srv.url));
      await assert.rejects(Client.open(srv.url), (e) => e.statusCode === 503);
      await cs[0].close(1000);
      cs[0] = await Client.open(srv.url);
      await cs[0].join('node-limit');
      await Promise.all(cs.map((c) => c.close(1000)));
    } finally {
      await srv.stop();
    }
  });

  test('SIGTERM closes every client with 1001 and exits 0', async () => {
    const srv = await startServer();
    const cs = [];
    for (let i = 0; i < 10; i++) {
      const c = await Client.open(srv.url);
      await c.join(`node-bye-${i % 3}`);
      cs.push(c);
    }
    srv.proc.kill('SIGTERM');
    const results = await withTimeout(Promise.all(cs.map((c) => c.closed)), 20000, 'all closed');
    for (const r of results) assert.equal(r.code, 1001);
    await srv.stop();
  });
});
