// TLS (docs/tls.md) with node's clients: npm `ws` over wss:// and node's `tls` module on the raw
// TCP protocol's TLS port (--tcp-tls-port), against a CA and server certificate made at test
// time with the `openssl` command (nothing committed). The clients trust the CA through `ca:`,
// so the certificate is really verified: a client without it is refused.
//
//   cd tests/node && ROOMCAST_BIN=../../build/sanitize/roomcast node --test tls.test.mjs

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(process.env.ROOMCAST_BIN ?? path.join(HERE, '../../build/sanitize/roomcast'));
const HELP = spawnSync(BIN, ['--help'], { encoding: 'utf8', timeout: 10000 });
const EXTRA = `${HELP.stdout ?? ''}${HELP.stderr ?? ''}`.includes('--no-netsync') ? ['--no-netsync'] : [];

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

// A CA and a server certificate for 127.0.0.1 signed by it (ECDSA P-256), in a fresh directory.
function makePki() {
  const dir = mkdtempSync(path.join(tmpdir(), 'roomcast-node-tls-'));
  const sh = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
     '-days', '2', '-subj', '/CN=node-test-ca');
  sh('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'srv.key');
  sh('req', '-new', '-key', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=node-tls-srv',
     '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
  sh('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
     '-out', 'srv.pem', '-days', '2', '-copy_extensions', 'copy');
  return { dir, ca: readFileSync(path.join(dir, 'ca.pem')), cert: path.join(dir, 'srv.pem'),
           key: path.join(dir, 'srv.key') };
}

function startServer(pki) {
  const proc = spawn(BIN, ['--bind', '127.0.0.1', '--port', '0', '--tls-port', '0', '--tcp-tls-port', '0',
                           '--tls-cert', pki.cert, '--tls-key', pki.key, ...EXTRA],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  return withTimeout(new Promise((resolve, reject) => {
    exited.then(({ code }) => reject(new Error(`roomcast exited ${code}:\n${stderr}`)));
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      stderr += d;
      const http = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      if (!http) return;
      const wss = /roomcast: tls listening on https:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      const tcps = /roomcast: tcp tls listening on 127\.0\.0\.1:(\d+)\n/.exec(stderr);
      resolve({
        port: Number(http[1]), wssPort: Number(wss[1]), tcpsPort: Number(tcps[1]),
        async stop() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          const r = await withTimeout(exited, 20000, 'roomcast exit');
          if (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(stderr)) {
            throw new Error(`roomcast exited with ${r.code ?? r.signal}\n${stderr.slice(-3000)}`);
          }
        },
      });
    });
  }), 10000, 'roomcast start');
}

// Messages of a WebSocket as a queue of parsed JSON objects.
function queueOf(emitter, event, parse) {
  const items = [];
  const waiters = [];
  emitter.on(event, (d) => {
    for (const item of parse(d)) {
      if (waiters.length) waiters.shift()(item);
      else items.push(item);
    }
  });
  return (what = 'message') => items.length ? Promise.resolve(items.shift())
    : withTimeout(new Promise((r) => waiters.push(r)), 10000, what);
}

async function wssClient(srv, pki) {
  const ws = new WebSocket(`wss://127.0.0.1:${srv.wssPort}/`, { ca: pki.ca });
  const next = queueOf(ws, 'message', (d) => [JSON.parse(d.toString())]);
  await withTimeout(new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); }), 10000, 'wss open');
  return { ws, next, send: (o) => ws.send(JSON.stringify(o)) };
}

// A TLS line client of the raw TCP protocol: one JSON object per line each way.
async function tlsLineClient(srv, pki, opts = {}) {
  const sock = tls.connect({ host: '127.0.0.1', port: srv.tcpsPort, ca: pki.ca, ...opts });
  let buf = '';
  sock.setEncoding('utf8');
  const next = queueOf(sock, 'data', (d) => {
    buf += d;
    const out = [];
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line !== '{"type":"keepalive"}') out.push(JSON.parse(line));
    }
    return out;
  });
  await withTimeout(new Promise((res, rej) => { sock.once('secureConnect', res); sock.once('error', rej); }),
                    10000, 'tls connect');
  return { sock, next, send: (o) => sock.write(`${JSON.stringify(o)}\n`) };
}

describe('TLS with node clients', () => {
  let pki, srv;
  before(async () => { pki = makePki(); srv = await startServer(pki); });
  after(async () => { await srv?.stop(); rmSync(pki.dir, { recursive: true, force: true }); });

  test('ws over wss: the CA is trusted through ca:, join, publish, receive', async () => {
    const a = await wssClient(srv, pki);
    const b = await wssClient(srv, pki);
    const peer = a.ws._socket.getPeerCertificate();
    assert.equal(peer.subject.CN, 'node-tls-srv');
    assert.match(a.ws._socket.getProtocol(), /^TLSv1\.[23]$/);
    for (const c of [a, b]) {
      c.send({ type: 'join', room: 'node-tls' });
      assert.equal((await c.next('joined')).type, 'joined');
    }
    a.send({ type: 'chat', text: 'hello over wss' });
    for (const c of [a, b]) {
      const m = await c.next('chat');
      assert.equal(m.text, 'hello over wss');
      assert.equal(m.room, 'node-tls');
    }
    a.ws.close();
    b.ws.close();
  });

  test('a client that does not trust the CA is refused', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${srv.wssPort}/`);
    const err = await withTimeout(new Promise((res) => { ws.once('error', res); ws.once('open', () => res(null)); }),
                                  10000, 'untrusted connect');
    assert.ok(err, 'the connection must fail');
    assert.match(String(err.code ?? err.message), /SELF_SIGNED|UNABLE_TO_VERIFY|unable to verify/i);
  });

  test('raw TCP over TLS (ALPN roomcast-tcp) and wss in one room, in order', async () => {
    const t = await tlsLineClient(srv, pki, { ALPNProtocols: ['roomcast-tcp'] });
    assert.equal(t.sock.alpnProtocol, 'roomcast-tcp');
    assert.equal(t.sock.getPeerCertificate().subject.CN, 'node-tls-srv');
    const w = await wssClient(srv, pki);
    t.send({ type: 'join', room: 'node-mixed' });
    assert.equal((await t.next('tcp joined')).type, 'joined');
    w.send({ type: 'join', room: 'node-mixed' });
    assert.equal((await w.next('ws joined')).type, 'joined');
    const n = 2000;
    for (let i = 0; i < n; i++) (i % 2 ? w : t).send({ type: 'n', i });
    for (const c of [t, w]) {
      let last = 0;
      const seen = new Set();
      for (let k = 0; k < n; k++) {
        const m = await c.next(`message ${k}`);
        assert.equal(m.msg_id, last + 1);
        last = m.msg_id;
        seen.add(m.i);
      }
      assert.equal(seen.size, n);
    }
    t.sock.end();
    w.ws.close();
  });

  test('a node tls client offering only http/1.1 to the raw TCP port is refused', async () => {
    await assert.rejects(tlsLineClient(srv, pki, { ALPNProtocols: ['http/1.1'] }),
                         /no.application.protocol|alert/i);
  });
});
