"""Start STYLY NetSync's own Python server (the reference) of one protocol generation as a peer
for bench/netsync.sh, on private ports, from a local checkout of styly-dev/STYLY-NetSync.

    /usr/bin/python3 bench/peers/ns_reference.py 6|8 DIR
    -> stderr: "ns_reference: netsync router tcp://127.0.0.1:R pub tcp://127.0.0.1:P
                discovery D pose tcp://127.0.0.1:Q (REF)"  (roomcast's start-up line)

Nothing of the reference is stored in this repository: tests/netsync/reference.py's extract()
copies the server package out of the checkout ($NETSYNC_REF_REPO, default the mirror in
/work/.mirror) with `git archive` into DIR (the caller removes it), and this process then
*execs* Debian's python3 on a small launcher, so the PID the caller holds is the server's
(every thread's CPU is counted). Generation 6 runs tag $NETSYNC_REF_V06 (default v0.6.1: ports
from its module constants, which v0.6.1's main() reads at start, REST port from
NETSYNC_REST_PORT); 8 runs $NETSYNC_REF_V8 (default HEAD, the protocol-8 server) with the
launcher of tests/netsync/reference.py (no LAN discovery probe), default timings otherwise.
Exit status 3 with a one-line reason when the checkout is missing.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "netsync"))
import reference  # noqa: E402  (tests/netsync/reference.py)

LAUNCHER_V06 = '''
import sys
sys.path.insert(0, {src!r})
from styly_netsync import server
server.get_version = lambda: "0.6.1"          # pyproject is not extracted
server.DEFAULT_DEALER_PORT = {router}
server.DEFAULT_PUB_PORT = {pub}
sys.argv = ["styly-netsync-server", "--server-discovery-port", "{disc}"]
server.main()
'''


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("6", "8"):
        sys.exit("usage: ns_reference.py 6|8 DIR")
    gen, dest = sys.argv[1], sys.argv[2]
    ref = reference.V06_REF if gen == "6" else reference.V8_REF
    why = reference.available(ref)
    if why:
        print(f"ns_reference: {why}", file=sys.stderr)
        sys.exit(3)
    src = reference.extract(ref, dest)
    router, pose, pub, disc, rest = reference.free_ports(5)
    if gen == "6":
        os.environ["NETSYNC_REST_PORT"] = str(rest)
        code = LAUNCHER_V06.format(src=src, router=router, pub=pub, disc=disc)
        pose = 0
    else:
        cpath = os.path.join(src, "bench.toml")
        with open(cpath, "w") as f:
            f.write('server_name = "STYLY-NetSync-Server"\n')
        argv = ["--config", cpath, "--control-port", str(router), "--transform-port", str(pose),
                "--pub-port", str(pub), "--server-discovery-port", str(disc),
                "--rest-api-port", str(rest)]
        code = reference.LAUNCHER.format(src=src, argv=argv)
    print(f"ns_reference: netsync router tcp://127.0.0.1:{router} pub tcp://127.0.0.1:{pub} "
          f"discovery {disc} pose tcp://127.0.0.1:{pose} ({ref})", file=sys.stderr, flush=True)
    os.chdir(src)
    os.execv(reference.PYTHON, [reference.PYTHON, "-c", code])


if __name__ == "__main__":
    main()
