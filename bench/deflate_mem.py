#!/usr/bin/env python3
"""bench/deflate_mem.py [BIN] — server memory per connection with permessage-deflate (issue 17):
500 WebSocket clients (Python websockets) join 50 rooms and each sends one 330-byte message,
plain, compressed with client_no_context_takeover, and compressed keeping its context (what
browsers do); prints the server's RSS growth per connection for each."""
import asyncio, sys, subprocess, re, time, websockets, json
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
async def run(port, pid, mode):
    conns = []
    for i in range(500):
        ext = None if mode == "plain" else [websockets.extensions.permessage_deflate.ClientPerMessageDeflateFactory(client_no_context_takeover=(mode=="nct"))]
        w = await websockets.connect(f"ws://127.0.0.1:{port}/", extensions=ext, compression=None)
        conns.append(w)
    await asyncio.sleep(0.3); r0 = rss(pid)
    for i, w in enumerate(conns):
        await w.send(json.dumps({"type": "join", "room": f"m{i%50}"}))
        await w.recv()
        await w.send(json.dumps({"type": "pose", "x": i * 1.5, "pad": "a" * 300}))
    await asyncio.sleep(1.0); r1 = rss(pid)
    print(mode, "RSS growth per connection after joining and sending one message:", round((r1 - r0) * 1024 / 500), "bytes")
    for w in conns: await w.close()
for mode in ("plain", "nct", "takeover"):
    p = subprocess.Popen([sys.argv[1] if len(sys.argv) > 1 else "build/roomcast", "--port", "0", "--no-netsync", "--log-level", "info", "--history-size", "0"], stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        m = re.search(r"listening on http://127.0.0.1:(\d+)/", p.stderr.readline())
        if m: port = int(m.group(1))
    asyncio.run(run(port, p.pid, mode))
    p.terminate(); p.wait()
