// What the browser tests share: roomcast processes (Server) and Debian's chromium driven by
// npm playwright-core (launchBrowser; never a downloaded browser: executablePath is the
// system one, --no-sandbox because the tests run as root).
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "../..");
export const BIN = path.resolve(REPO, process.env.ROOMCAST_BIN ?? "build/sanitize/roomcast");
export const OUT = path.join(REPO, "build/test-output");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

// Flags that keep parallel servers from colliding: the NetSync transport listens on fixed
// ports by default, so it is switched off when the binary has it.
const EXTRA_FLAGS = execFileSync(BIN, ["--help"], { encoding: "utf8" }).includes("--no-netsync")
  ? ["--no-netsync"] : [];

// One roomcast process. Its stderr is collected; stop() demands exit status 0 (the sanitizer
// build fails the status on leaks and UB).
export class Server {
  static async start(port = 0, flags = EXTRA_FLAGS) {
    const s = new Server();
    s.stderr = "";
    s.proc = spawn(BIN, ["--bind", "127.0.0.1", "--port", String(port), "--log-level", "warn",
                              ...flags],
                   { stdio: ["ignore", "ignore", "pipe"] });
    s.exited = new Promise((resolve) => s.proc.on("exit", (code, sig) => resolve({ code, sig })));
    s.port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`roomcast did not start:\n${s.stderr}`)), 10000);
      s.proc.stderr.on("data", (d) => {
        s.stderr += d;
        const m = /roomcast: listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(s.stderr);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      s.proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`roomcast exited ${code}:\n${s.stderr}`)); });
    });
    return s;
  }

  async stop() {
    this.proc.kill("SIGTERM");
    const { code, sig } = await this.exited;
    assert.equal(code, 0, `roomcast exited with ${code ?? sig}\n${this.stderr.slice(-3000)}`);
  }
}

// Headless chromium with a fresh profile; returns { browser, profile } (profile.remove()
// deletes the profile directory after browser.close()). launchPersistentContext is how a
// user-data-dir is given; every test opens fresh pages in it. extraArgs are added to the
// command line (the TLS test's --ignore-certificate-errors-spki-list).
export async function launchBrowser(extraArgs = []) {
  mkdirSync(OUT, { recursive: true });
  const dir = mkdtempSync(path.join(tmpdir(), "roomcast-chromium-"));
  const browser = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           ...extraArgs],
    viewport: { width: 1280, height: 800 },
  });
  return { browser, profile: { dir, remove: () => rmSync(dir, { recursive: true, force: true }) } };
}

export const waitFor = (page, fn, arg, timeout = 15000) =>
  page.waitForFunction(fn, arg, { timeout, polling: 50 });
