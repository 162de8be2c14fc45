// web/roomcast.d.ts and docs/client.md against web/roomcast.js:
// - tsc --strict compiles types/check.ts (the reference's examples, and misuses that must not
//   compile) against the declarations;
// - every public property, method, option and event of the running client is declared in the
//   .d.ts and named in docs/client.md, and the .d.ts declares nothing the client lacks.
//
//   cd tests/node && node --test types.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RoomcastClient, Room } from "../../web/roomcast.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const JS = readFileSync(path.join(REPO, "web/roomcast.js"), "utf8");
const DTS = readFileSync(path.join(REPO, "web/roomcast.d.ts"), "utf8");
const DOC = readFileSync(path.join(REPO, "docs/client.md"), "utf8");

// The body of `export class NAME ... {` or `export interface NAME ... {` in the .d.ts.
function block(kind, name) {
  const m = new RegExp(`export ${kind} ${name}\\b[^{]*\\{`).exec(DTS);
  assert.ok(m, `${kind} ${name} in roomcast.d.ts`);
  let depth = 1, i = m.index + m[0].length;
  const start = i;
  for (; depth; i++) depth += DTS[i] === "{" ? 1 : DTS[i] === "}" ? -1 : 0;
  return DTS.slice(start, i - 1);
}

// Member names at the top level of a block (comments dropped).
function members(body) {
  const names = new Set();
  let depth = 0;
  for (const line of body.replace(/\/\*[\s\S]*?\*\//g, "").split("\n")) {
    if (depth === 0) {
      const m = /^\s+(?:readonly\s+|private\s+)?([A-Za-z_$][\w$]*)\??\s*[(:<]/.exec(line);
      if (m && m[1] !== "constructor") names.add(m[1]);
    }
    for (const ch of line) depth += ch === "{" || ch === "[" || ch === "(" ? 1 : ch === "}" || ch === "]" || ch === ")" ? -1 : 0;
  }
  return names;
}

class NoSocket { constructor() { throw new Error("not used"); } }

function runtimeMembers(obj, proto) {
  const names = new Set(Object.keys(obj).filter((k) => !k.startsWith("_")));
  for (let p = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) if (k !== "constructor" && !k.startsWith("_")) names.add(k);
  }
  return names;
}

const sorted = (s) => [...s].sort();

test("tsc --strict compiles the examples against roomcast.d.ts", { skip: !existsSync(path.join(HERE, "node_modules/typescript")) && "npm ci: typescript missing" }, () => {
  const r = spawnSync(process.execPath, [path.join(HERE, "node_modules/typescript/bin/tsc"), "-p", path.join(HERE, "types/tsconfig.json")],
                      { encoding: "utf8", timeout: 120000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

test("RoomcastClient and Room: the .d.ts declares exactly the public members", () => {
  const rc = new RoomcastClient("ws://x/", { WebSocket: NoSocket, connect: false });
  const room = rc.join("r");
  assert.deepEqual(sorted(members(block("class", "RoomcastClient"))), sorted([...runtimeMembers(rc, RoomcastClient.prototype)]
    .filter((k) => !["on", "off", "once", "emit"].includes(k))));
  assert.deepEqual(sorted(members(block("class", "Room"))), sorted([...runtimeMembers(room, Room.prototype)]
    .filter((k) => !["on", "off", "once", "emit"].includes(k))));
  rc.close();
});

test("options, handlers and events: the .d.ts matches the client", () => {
  const clientOpts = new Set([...JS.slice(JS.indexOf("constructor(url, opts"), JS.indexOf("/** Starts connecting")).matchAll(/\bopts\.(\w+)/g)].map((m) => m[1]));
  assert.deepEqual(sorted(members(block("interface", "ClientOptions"))), sorted(clientOpts));
  const roomOpts = new Set([...JS.slice(JS.indexOf("constructor(client, name, opts"), JS.indexOf("addHandlers(this, opts)")).matchAll(/\bopts\.(\w+)/g)].map((m) => m[1]));
  assert.deepEqual(sorted(members(block("interface", "JoinOptions"))), sorted(roomOpts));
  const handlers = [...JS.matchAll(/\["(on\w+)", "(\w+)"\]/g)];
  assert.deepEqual(sorted(members(block("interface", "RoomHandlers"))), sorted(handlers.map((m) => m[1])));
  assert.deepEqual(sorted(members(block("interface", "RoomEvents"))), sorted(handlers.map((m) => m[2])));
  // the client emits literal names, plus "replaced" and "kicked" by variable
  const emitted = new Set([...JS.matchAll(/\bemit\("(\w+)"/g)].map((m) => m[1]).concat(["replaced", "kicked", "unauthenticated", "token_expired"]));
  const declared = new Set([...members(block("interface", "ClientEvents")), ...members(block("interface", "RoomEvents"))]);
  assert.deepEqual(sorted(declared), sorted(emitted));
  const pub = members(block("interface", "PublishOptions"));
  assert.deepEqual(sorted(pub), ["ack", "key"]);
  assert.match(JS, /opts\.ack\b/);
  assert.match(JS, /opts\.key\b/);
});

test("docs/client.md names every option, property, method and event", () => {
  const names = new Set();
  for (const [kind, name] of [["class", "RoomcastClient"], ["class", "Room"], ["interface", "ClientOptions"],
                              ["interface", "JoinOptions"], ["interface", "RoomHandlers"],
                              ["interface", "ClientEvents"], ["interface", "RoomEvents"],
                              ["interface", "PublishOptions"], ["interface", "AckResult"]]) {
    for (const n of members(block(kind, name))) names.add(n);
  }
  const missing = [...names].filter((n) => !new RegExp("`[^`]*\\b" + n.replace("$", "\\$") + "\\b[^`]*`").test(DOC));
  assert.deepEqual(missing, [], "named in docs/client.md (in backquotes)");
  const codes = [...DTS.matchAll(/"(\w+)"/g)].map((m) => m[1]);
  const local = /LocalErrorCode =([^;]*);/.exec(DTS)[1];
  for (const c of [...local.matchAll(/"(\w+)"/g)].map((m) => m[1])) {
    assert.match(DOC, new RegExp("`" + c + "`"), `local error code ${c} documented`);
    assert.ok(JS.includes(`"${c}"`), `local error code ${c} used by the client`);
  }
  assert.ok(codes.length);
});
