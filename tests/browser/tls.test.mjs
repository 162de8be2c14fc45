// TLS in a real browser (docs/tls.md): Debian's chromium, headless, loads a page over https://
// from roomcast's TLS listener and opens wss:// to it, joins a room and exchanges messages with
// a node client on the raw TCP protocol's TLS port (node's own `tls` module, --tcp-tls-port).
//
//   ROOMCAST_BIN=build/sanitize/roomcast node --test tests/browser/tls.test.mjs
//
// The certificate is made at test time by the `openssl` command. Chromium is told to accept
// exactly that leaf's public key (--ignore-certificate-errors-spki-list with the base64 SHA-256
// of its SubjectPublicKeyInfo), nothing else: the second test shows that a server with another
// key, even one signed by the same CA, is refused, so the browser still verifies something real.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, execSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { Server, launchBrowser, waitFor } from "./harness.mjs";

let browser, profile, pki, server, other;

// A CA and two server certificates for 127.0.0.1 signed by it, each with its own P-256 key.
function makePki() {
  const dir = mkdtempSync(path.join(tmpdir(), "roomcast-browser-tls-"));
  const sh = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  sh("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
     "-days", "2", "-subj", "/CN=browser-test-ca");
  for (const name of ["srv", "other"]) {
    sh("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`);
    sh("req", "-new", "-key", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=browser-${name}`,
       "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    sh("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
       "-out", `${name}.pem`, "-days", "2", "-copy_extensions", "copy");
  }
  // base64(SHA-256(DER SubjectPublicKeyInfo)) of the first leaf: what Chromium compares.
  const spki = execSync(
    "openssl x509 -pubkey -noout -in srv.pem | openssl pkey -pubin -outform der | " +
    "openssl dgst -sha256 -binary | openssl base64 -A", { cwd: dir, encoding: "utf8" }).trim();
  return { dir, spki, ca: readFileSync(path.join(dir, "ca.pem")) };
}

async function startTls(name) {
  const s = await Server.start(0, ["--no-netsync", "--tls-port", "0", "--tcp-tls-port", "0",
                                   "--tls-cert", path.join(pki.dir, `${name}.pem`),
                                   "--tls-key", path.join(pki.dir, `${name}.key`)]);
  s.tlsPort = Number(/roomcast: tls listening on https:\/\/127\.0\.0\.1:(\d+)\//.exec(s.stderr)[1]);
  s.tcpsPort = Number(/roomcast: tcp tls listening on 127\.0\.0\.1:(\d+)\n/.exec(s.stderr)[1]);
  return s;
}

before(async () => {
  pki = makePki();
  server = await startTls("srv");
  other = await startTls("other");
  ({ browser, profile } = await launchBrowser([`--ignore-certificate-errors-spki-list=${pki.spki}`]));
});

after(async () => {
  await browser?.close();
  if (server) await server.stop();
  if (other) await other.stop();
  profile?.remove();
  if (pki) rmSync(pki.dir, { recursive: true, force: true });
});

// A line client of the raw TCP protocol over TLS, trusting the CA; next() gives parsed lines.
async function tcpTlsClient(port) {
  const sock = tls.connect({ host: "127.0.0.1", port, ca: pki.ca });
  await new Promise((res, rej) => { sock.once("secureConnect", res); sock.once("error", rej); });
  let buf = "";
  const items = [], waiters = [];
  sock.setEncoding("utf8");
  sock.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === '{"type":"keepalive"}') continue;
      const m = JSON.parse(line);
      if (waiters.length) waiters.shift()(m);
      else items.push(m);
    }
  });
  return {
    sock,
    send: (o) => sock.write(`${JSON.stringify(o)}\n`),
    next: () => items.length ? Promise.resolve(items.shift()) : new Promise((r) => waiters.push(r)),
  };
}

test("a page over https opens wss:// to roomcast and talks with a raw-TCP-over-TLS client", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const resp = await page.goto(`https://127.0.0.1:${server.tlsPort}/status`);
  assert.equal(resp.status(), 200);
  const sec = await resp.securityDetails();
  assert.equal(sec.subjectName, "browser-srv");
  assert.equal(sec.issuer, "browser-test-ca");
  assert.match(sec.protocol, /^TLS 1\.[23]$/);
  assert.equal(await page.evaluate(() => location.protocol), "https:");

  const tcp = await tcpTlsClient(server.tcpsPort);
  tcp.send({ type: "join", room: "browser-tls" });
  assert.equal((await tcp.next()).type, "joined");

  // The page: the client library from the server, over wss:// to the page's own origin.
  await page.evaluate(async () => {
    const { RoomcastClient } = await import("/roomcast.js");
    window.got = [];
    window.rc = new RoomcastClient(`wss://${location.host}/`, { minDelay: 100, maxDelay: 500 });
    window.room = window.rc.join("browser-tls", { onMessage: (m) => window.got.push(m) });
    await new Promise((resolve) => window.room.on("joined", resolve));
  });
  for (let i = 0; i < 20; i++) await page.evaluate((i) => window.room.publish({ type: "chat", from: "page", i }), i);
  for (let i = 0; i < 20; i++) tcp.send({ type: "chat", from: "tcp", i });
  await waitFor(page, () => window.got.length >= 40);
  const got = await page.evaluate(() => window.got.map((m) => ({ msg_id: m.msg_id, from: m.from, i: m.i })));
  const fromTcp = [];
  for (let k = 0; k < 40; k++) fromTcp.push(await tcp.next());
  // one order for both: the same msg_ids carrying the same messages, consecutive
  assert.deepEqual(got, fromTcp.map((m) => ({ msg_id: m.msg_id, from: m.from, i: m.i })));
  for (let k = 1; k < got.length; k++) assert.equal(got[k].msg_id, got[k - 1].msg_id + 1);
  for (const who of ["page", "tcp"]) {
    assert.deepEqual(got.filter((m) => m.from === who).map((m) => m.i), [...Array(20).keys()]);
  }
  assert.deepEqual(errors, []);
  tcp.sock.end();
  await page.close();
});

test("a certificate whose key is not in the list is refused by the browser", async () => {
  const page = await browser.newPage();
  // (the certificate error page replaces the navigation: chrome-error://chromewebdata/)
  await assert.rejects(page.goto(`https://127.0.0.1:${other.tlsPort}/status`),
                       /ERR_CERT_AUTHORITY_INVALID|chrome-error:/);
  await page.close();
  // and a page of the trusted server cannot open wss:// to the other one either
  const page2 = await browser.newPage();
  await page2.goto(`https://127.0.0.1:${server.tlsPort}/status`);
  const outcome = await page2.evaluate((port) => new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/`);
    ws.onopen = () => resolve("open");
    ws.onerror = () => resolve("error");
  }), other.tlsPort);
  assert.equal(outcome, "error");
  await page2.close();
});
