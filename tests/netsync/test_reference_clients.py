"""NetSync's own Python client (client.py) and simulator (client_simulator.py) against roomcast.

Both generations: tag v0.6.1 against roomcast's v0.6 side (passes today), and the v8 HEAD of
the reference checkout against roomcast's protocol 8 (the implementation of issue 13).
The reference package is extracted from ``$NETSYNC_REF_REPO`` (default: the local mirror) into a
temporary directory at run time (reference.py); nothing of it is kept in this repository.
Addresses and ports are given through the reference's own constructor arguments and CLI options.
Skipped with the reason when the checkout or a Debian package the reference imports is absent.
"""

import json
import os
import random
import shutil
import subprocess

import pytest
import zmq

import reference
from conftest import Client, NSServer, wait_sub
import ns8client as n8

GENERATIONS = {"v0.6.1": reference.V06_REF, "v8": reference.V8_REF}


@pytest.fixture(scope="module", params=sorted(GENERATIONS))
def gen(request):
    name = request.param
    ref = GENERATIONS[name]
    why = reference.available(ref)
    if why:
        pytest.skip(why)
    d = reference.extract(ref)
    r = subprocess.run([reference.PYTHON, "-c",
                        "import ns_shims, styly_netsync.client, styly_netsync.client_simulator"],
                       cwd=d, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"NetSync {ref} cannot be imported with Debian's packages (install "
                    f"python3-zmq python3-loguru python3-fastapi python3-uvicorn "
                    f"python3-msgpack python3-psutil python3-numpy): {r.stderr.strip()[-300:]}")
    srv = NSServer("--netsync-client-timeout", 30) if name == "v0.6.1" else n8.start_server8(
        n8.STEADY)
    yield name, d, srv
    err = srv.stderr()
    rc = srv.stop()
    shutil.rmtree(d, ignore_errors=True)
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-3000:]}"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def uniq(prefix):
    return f"{prefix}-{random.randrange(1 << 30)}"


# Our own driver of the reference client: two managers in one room, RPC, variables, poses.
DRIVER = r'''
import json, sys, time
import ns_shims  # noqa: F401
from styly_netsync.client import net_sync_manager
from styly_netsync.types import client_transform_data, transform_data
gen, port, tport, pport, room = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
kw = dict(server="tcp://127.0.0.1", dealer_port=port, sub_port=pport, room=room)
if gen == "v8":
    kw["transform_port"] = tport
res = {}
a, b = net_sync_manager(**kw), net_sync_manager(**kw)
got_rpc = []
a.on_rpc_received.add_listener(lambda s, f, args: got_rpc.append([s, f, list(args)]))
a.start(); b.start()

def tx(x, m):
    t = transform_data(pos_x=x, pos_y=1.5, pos_z=0.25)
    return client_transform_data(device_id=m.device_id, physical=transform_data(pos_x=x), head=t,
                                 right_hand=transform_data(pos_x=x + 0.3, pos_y=1.2),
                                 left_hand=transform_data(pos_x=x - 0.3, pos_y=1.2),
                                 virtuals=[])

def pump(until, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        a.send_transform(tx(1.0, a)); b.send_transform(tx(2.0, b))
        for m in (a, b):
            m.dispatch_pending_events()
        if until():
            return True
        time.sleep(0.1)
    return False

res["numbered"] = pump(lambda: a.client_no and b.client_no)
res["a_no"], res["b_no"] = a.client_no, b.client_no
def sees_other(m, other):
    snap = m.get_room_transform_data()
    return bool(snap and other.client_no in snap.clients)
res["poses"] = pump(lambda: sees_other(a, b) and sees_other(b, a))
time.sleep(0.5)                                   # v8 clients queue RPCs until ready
b.rpc("Ping", ["x", "y"])
res["rpc"] = pump(lambda: got_rpc)
res["rpc_got"] = got_rpc
a.set_global_variable("g", "v1")
res["gvar"] = pump(lambda: b.get_global_variable("g") == "v1")
a.set_client_variable(b.client_no, "c", "v2")
res["cvar"] = pump(lambda: b.get_client_variable(b.client_no, "c") == "v2"
                   and a.get_client_variable(b.client_no, "c") == "v2")
a.stop(); b.stop()
print("RESULT " + json.dumps(res), flush=True)
'''


def run_driver(d, name, srv, room):
    path = os.path.join(d, "ns_driver.py")
    with open(path, "w") as f:
        f.write(DRIVER)
    r = subprocess.run([reference.PYTHON, path, name, str(srv.router_port),
                        str(srv.pose_port or 0), str(srv.pub_port), room],
                       cwd=d, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"driver failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(lines[-1][7:]), r


def test_reference_clients_rpc_variables_poses(gen):
    name, d, srv = gen
    res, r = run_driver(d, name, srv, uniq("refc"))
    diag = f"{res}\n{r.stderr[-2000:]}"
    assert res["numbered"] and {res["a_no"], res["b_no"]} == {1, 2}, diag
    assert res["poses"], "the reference clients did not see each other's poses\n" + diag
    assert res["rpc"] and res["rpc_got"] == [[res["b_no"], "Ping", ["x", "y"]]], diag
    assert res["gvar"], "global variable did not round-trip\n" + diag
    assert res["cvar"], "client variable did not round-trip\n" + diag


def test_reference_simulator_room(gen, ctx):
    name, d, srv = gen
    room, n = uniq("sim"), 8
    args = [reference.PYTHON, "-m", "styly_netsync.client_simulator", "--clients", str(n),
            "--server", "tcp://127.0.0.1", "--dealer-port", str(srv.router_port),
            "--sub-port", str(srv.pub_port), "--room", room, "--log-level", "WARNING"]
    if name == "v8":
        args += ["--transform-port", str(srv.pose_port)]
    env = dict(os.environ, PYTHONPATH=d)
    boot = "import runpy, sys, ns_shims; sys.argv = sys.argv[1:]; " \
           "runpy.run_module('styly_netsync.client_simulator', run_name='__main__')"
    logf = open(os.path.join(d, f"sim-{room}.log"), "w+")
    proc = subprocess.Popen([reference.PYTHON, "-c", boot, "sim"] + args[3:], cwd=d, env=env,
                            stdout=logf, stderr=subprocess.STDOUT)
    try:
        if name == "v8":
            obs = n8.Client8(ctx, srv, room, "observer", stealth=True)
            m = obs.pub_until(lambda m: m[0] == "pose" and len(m[3]) >= n, 30)
            ok_pose = m is not None and len(m[3]) == n
            mp = obs.ctl_until(lambda m: m[0] == "map" and len(m[2]) == n + 1, 15)
            ok_map = mp is not None
        else:
            obs = Client(ctx, srv, room, "observer")
            wait_sub()
            m = obs.recv_until(lambda m: m[0] == "rt" and len(m[2]) >= n, 30)
            ok_pose = m is not None and len(m[2]) == n
            mp = obs.recv_until(lambda m: m[0] == "map" and len(m[1]) == n, 15)
            ok_map = mp is not None
        logf.seek(0)
        log = logf.read()[-3000:]
        assert proc.poll() is None, "simulator exited:\n" + log
        assert ok_pose, f"room broadcast never listed all {n} simulated clients:\n" + log
        assert ok_map, f"mapping never listed all {n} simulated clients:\n" + log
        obs.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
