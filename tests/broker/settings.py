"""Every flag name, default and protocol decision the broker tests rely on, in one place.

docs/broker.md is the specification; where it says "decision", the value lives here too, so
the implementers (branches brkcore, brkzmq) can change a decision by editing this file and the
doc together. Nothing else in tests/broker spells a flag name or a protocol constant.
"""

import re

# -- flags (docs/broker.md, "Flags") -------------------------------------------------------
F_WORKER_PORT = "--broker-worker-port"
F_CLIENT_PORT = "--broker-client-port"
F_BIND = "--broker-bind"
F_DEFAULT_SERVICE = "--broker-default-service"
F_REQUEST_TIMEOUT = "--request-timeout"          # seconds (house style: durations in SEC)
F_SERVICE_QUEUE = "--service-queue"              # requests waiting per service
F_HEARTBEAT = "--broker-heartbeat"               # seconds
F_LIVENESS = "--broker-liveness"                 # intervals
F_MAX_MESSAGE = "--broker-max-message"           # bytes, whole request/reply body
F_ROOM_SERVICE = "--room-service"                # PATTERN=SERVICE, repeatable
F_AT_MOST_ONCE = "--broker-at-most-once"         # decision: SERVICE, repeatable
F_TCP_PORT = "--tcp-port"
F_SERVICE_GRACE = "--service-grace"          # seconds; decision: default 30
F_API_KEY = "--api-key"                      # POST /api/services/* needs it (Bearer)

DEFAULT_SERVICE = "default"
DEFAULTS = {                                     # decision: documented defaults
    F_REQUEST_TIMEOUT: 10.0,
    F_SERVICE_QUEUE: 1000,
    F_HEARTBEAT: 2.5,
    F_LIVENESS: 3,
    F_MAX_MESSAGE: 1048576,
}

# What the test servers run with: short intervals so expiry tests take about a second.
TEST_HEARTBEAT = 0.1
TEST_LIVENESS = 3
TEST_REQUEST_TIMEOUT = 3.0
TEST_FLAGS = (F_HEARTBEAT, TEST_HEARTBEAT, F_LIVENESS, TEST_LIVENESS,
              F_REQUEST_TIMEOUT, TEST_REQUEST_TIMEOUT)

# -- startup lines -------------------------------------------------------------------------
BROKER_LINE_RE = re.compile(r"roomcast: broker workers tcp://(\S+):(\d+) clients tcp://(\S+):(\d+)")
HTTP_LINE_RE = re.compile(r"roomcast: listening on http://\S+:(\d+)/")
TCP_LINE_RE = re.compile(r"roomcast: tcp listening on \S+:(\d+)\n")

# -- the seed's LRU queue (REQ workers and REQ clients) -------------------------------------
LRU_READY = b"READY"

# -- Paranoid Pirate (RFC 6) ----------------------------------------------------------------
PPP_READY = b"\x01"
PPP_HEARTBEAT = b"\x02"

# -- Majordomo MDP/0.1 (RFC 7) and MMI (RFC 8) ----------------------------------------------
MDPC = b"MDPC01"
MDPW = b"MDPW01"
W_READY, W_REQUEST, W_REPLY, W_HEARTBEAT, W_DISCONNECT = (b"\x01", b"\x02", b"\x03", b"\x04",
                                                          b"\x05")
MMI_SERVICE = b"mmi.service"
MMI_FOUND, MMI_NOT_FOUND, MMI_NOT_IMPLEMENTED = b"200", b"404", b"501"
# decision: a request for an unknown service from an MDP client waits --request-timeout for a
# worker (RFC 7 "SHOULD queue ... and expire"); on expiry the client gets no reply (MDP/0.1 has
# no error reply); the ZeroMQ client sees silence, as with the guide's broker.

# -- roomcast's own extension on the worker port: publishing into rooms (decision) ---------
# A publisher (any socket, DEALER or REQ) sends [""][RCPUB][room][body] (optionally a 5th part:
# the sender name, accepted; decision: not shown, the message's client_id is 0 like every
# message the server side publishes); roomcast answers [""][RCPUB][status][msg_id or reason].
# The message is checked as roomcast.publish checks it (a JSON object, no server-reserved type).
RCPUB = b"RCPUB01"
PUB_OK, PUB_NO_ROOM, PUB_BAD = b"200", b"404", b"400"

# -- JSON requests from WebSocket / TCP clients ---------------------------------------------
ERR_NO_SERVICE = "no_service"
ERR_TIMEOUT = "timeout"
ERR_WORKER_LOST = "worker_lost"
ERR_OVERLOADED = "overloaded"
ERR_TOO_LARGE = "too_large"
# decision: a JSON "body" goes to the worker as its JSON text exactly as the client wrote it
# (UTF-8, no re-serialisation: byte-faithful and cheaper); a reply that parses as JSON comes
# back as "body", anything else as "body_b64" (standard base64). A request carries "body_b64"
# instead of "body" to send bytes (the workers' b"sleep:S" is such a body: as "body" the
# worker would get the JSON string '"sleep:S"'). decision: no binary WebSocket request frames
# (binary frames are the rooms' binary envelope); bytes go as "body_b64".
# decision: no_service at once for a name no worker ever served, once --service-grace has
# passed since start-up (during it every name queues: workers may not have connected yet).
BODY_B64 = "body_b64"
ROOM_SERVICE_MOVED = {"type": "room_service", "state": "moved"}

# -- HTTP -----------------------------------------------------------------------------------
HTTP_SERVICE_PATH = "/api/services/{service}"
HTTP_SERVICES_PATH = "/api/services"
HTTP_TIMEOUT_STATUS = 504
HTTP_UNAVAILABLE_STATUS = 503     # overloaded, or no worker and queue refused
HTTP_TOO_LARGE_STATUS = 413       # decision
TEST_API_KEY = "broker-tests-key"  # the HTTP tests' server runs with --api-key

# -- /metrics and GET /api/services counters (decision: names) ------------------------------
METRIC_PREFIX = "roomcast_broker_"
# GET /api/services: "counters" -> "malformed" -> port ("worker" | "client") -> kind -> count.
# The kinds are the codec's parse errors (mdp_err_name) and the socket layer's drops before the
# core (a message over --broker-max-message: "too_large"; over the frame limit:
# "too_many_frames"). /metrics: roomcast_broker_malformed_total{port,kind} (parse errors) and
# roomcast_broker_dropped_total{port,reason} (socket-layer drops).
MALFORMED = "malformed"
PORT_WORKER, PORT_CLIENT = "worker", "client"
MALFORMED_KINDS = ("identity", "frames", "delimiter", "header", "command", "service", "address",
                   "protocol", "too_many_frames", "too_large")
LATE_REPLY_COUNTER = "late_replies"       # in GET /api/services "counters"
UNEXPECTED_COUNTER = "unexpected_commands"  # valid but unexpected worker commands (MDP: DISCONNECT)
BAD_ADDRESS_COUNTER = "bad_address"       # a busy worker's reply naming another request


def malformed(counters, port, kind):
    """counters["malformed"][port][kind], 0 when absent."""
    return counters.get(MALFORMED, {}).get(port, {}).get(kind, 0)
