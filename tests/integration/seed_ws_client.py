"""The seed server's ws_client.py (../shared/seeds/python-websockets-game-server.txt), re-typed.

Changes from the original, and only these:
  * the server address is configurable (--uri, or --port on 127.0.0.1; the original hard-coded
    ws://localhost:8765);
  * the run is bounded: --count N exits 0 after N of the client's own pings came back
    (0 = run forever, as the original did); any failed check exits non-zero;
  * the original's order check never ran (`last_msg_id == msg_id` is a comparison, not an
    assignment, so last_msg_id stayed None). It is kept as it was, and a real check is added:
    every room message must carry the msg_id after the previous one, the first one being the
    joined message's last_msg_id + 1 when the server provides it;
  * --quiet silences the throughput lines.

Protocol use is unchanged: join, then ping-pong {'type':'ping','seq':N} messages, checking that
its own pings come back in order. Usage: seed_ws_client.py room [delay] [--port P] [--count N]
"""

from typing import *
import argparse, asyncio, json, websockets, time, sys

parser = argparse.ArgumentParser(description="seed ws_client.py with a configurable address")
parser.add_argument("room")
# A non-zero slow creates a client that can't keep up. If there are other clients in the room
# it will end up breaking, causing the server to disconnect it.
parser.add_argument("slow", nargs="?", type=float, default=0.0)
parser.add_argument("--uri", default=None)
parser.add_argument("--port", type=int, default=8765)
parser.add_argument("--count", type=int, default=0)
parser.add_argument("--quiet", action="store_true")
args = parser.parse_args()

room = args.room
slow = args.slow
uri = args.uri or f"ws://127.0.0.1:{args.port}"


def encode_msg(msg: Dict) -> str:
    return json.dumps(msg, ensure_ascii=False)

def decode_msg(text: str) -> Dict:
    return json.loads(text)

# An even simpler stats tracker than the server
trigger_count = 5000.0
if slow > 0:
    trigger_count /= (1+slow) * 100


class Done(Exception):
    pass


async def reader(websocket):
    count = 0
    seq = 0
    last_time = time.monotonic()
    client_id = None
    last_msg_id = None
    real_last_msg_id = None   # added: the check the original meant to make
    own_pings = 0

    async for message_raw in websocket:
        count += 1
        msg = decode_msg(message_raw)

        if msg['type'] == 'joined':
            client_id = msg['client_id']
            if 'last_msg_id' in msg:
                real_last_msg_id = msg['last_msg_id']
        else:
            # Ensure the messages have a single total order
            msg_id = msg['msg_id']
            if last_msg_id is None:
                last_msg_id == msg_id   # (sic) the seed's bug, kept
            else:
                if msg_id != (last_msg_id+1):
                    print(last_msg_id, msg_id)
                    raise Exception("bad msg sequence")
            # added: the real order check
            if real_last_msg_id is not None and msg_id != real_last_msg_id + 1:
                print(real_last_msg_id, msg_id, file=sys.stderr)
                raise Exception(f"bad msg sequence: {msg_id} after {real_last_msg_id}")
            real_last_msg_id = msg_id

        if msg['type'] == 'ping' and client_id == msg['client_id']:
            # Ensure our own measures retain the order we sent them
            if msg['seq'] != seq:
                print(seq, message_raw)
                raise Exception("bad message seq")
            own_pings += 1
            if args.count and own_pings >= args.count:
                raise Done()

        # Track rough throughput
        if count >= trigger_count:
            next_time = time.monotonic()
            if not args.quiet:
                print( f'{count /(next_time - last_time)}/s {room}' )
            last_time = time.monotonic()
            count = 0

        if client_id == msg['client_id']:
            seq += 1
            await websocket.send(encode_msg({'type': 'ping', 'seq': seq }))

        if slow > 0:
            await asyncio.sleep(slow)

    raise Exception("connection closed by the server")


async def hello():
    async with websockets.connect(uri) as websocket:
        print("Connect")
        await websocket.send( encode_msg({ 'type': 'join', 'room': room }) )
        consumer_task = asyncio.ensure_future(
            reader(websocket))
        done = await asyncio.wait(
            [consumer_task],
            return_when=asyncio.FIRST_COMPLETED,
        )
        try:
            consumer_task.result()
        except Done:
            print(f"OK {args.count} pings in order, room {room}")


asyncio.get_event_loop().run_until_complete(hello())
