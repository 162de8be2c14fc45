// Type-checks web/roomcast.d.ts (tsc --strict, run by ../types.test.mjs): the examples of
// docs/client.md written against the declarations, and a few misuses that must not compile.
import RoomcastDefault, { RoomcastClient, RoomcastError, Room } from "../../../web/roomcast.js";
import type { AckResult, Gap, JoinedInfo, Message, PresenceEvent, RoomMessage, StateInfo } from "../../../web/roomcast.js";

const rc: RoomcastClient = new RoomcastDefault("ws://127.0.0.1:8080/", { minDelay: 200, connect: true });
rc.on("state", (s) => { const x: "idle" | "connecting" | "open" | "reconnecting" | "closed" = s; void x; });
rc.on("close", ({ code, reason, willReconnect }) => console.log(code, reason.length, willReconnect));
rc.on("replaced", ({ code }) => console.log(code));
rc.on("session", ({ session, clientId, previous }) => console.log(session, clientId, previous.clientId));
rc.on("error", (e, room) => console.log(e.code, e.room, e.ref, room?.name));
const off = rc.on("gap", (g: Gap, room: Room) => console.log(g.from, g.to ?? "?", room.lastMsgId));
off();

const lobby = rc.join("lobby", {
  history: 50, state: true, conflate: true, presence: true,
  onMessage: (m: Message) => { if (m.binary) m.payload.byteLength; else console.log(m.msg_id, m.client_id, m.type); },
  onJoined: (j: JoinedInfo) => console.log(j.client_id, j.last_msg_id, j.replay_from, j.members),
  onState: (messages: RoomMessage[], room, info: StateInfo) => console.log(messages.length, room.name, info.last_msg_id),
  onPresence: (p: PresenceEvent) => {
    if (p.event === "join" || p.event === "leave") console.log(p.client_id);
    else if (p.event === "batch") console.log(p.joined, p.left, p.member_count);
    else console.log(p.members);
  },
  onConflated: (c) => console.log(c.state_key, c.msg_ids),
  onError: (e) => console.log(e.code === "state_full"),
  onGap: (g) => console.log(g.reason),
  onLeft: (l) => console.log(l.reason),
  onAck: (a) => console.log(a.msg_id, a.duplicate),
});

const sent: boolean = lobby.publish({ type: "chat", text: "hi" });
const sentBin: boolean = lobby.publish(new Uint8Array([1, 2, 3]));
const keyed: boolean = lobby.publish({ type: "pos", x: 1 }, { key: rc.newKey() });
const wantAck: boolean = Math.random() > 0.5;
const either: boolean | Promise<AckResult> = lobby.publish({ type: "m" }, { ack: wantAck });
void sent; void sentBin; void keyed; void either;

async function acks(): Promise<number> {
  try {
    const a: AckResult = await lobby.publish({ type: "chat", text: "sure?" }, { ack: true });
    const b = await lobby.publish({ type: "chat" }, { ack: true, key: "order-17" });
    return a.msg_id + (b.duplicate ? 0 : 1);
  } catch (e) {
    if (e instanceof RoomcastError) console.log(e.code, e.ref, e.room, e.local, e.error.message);
    return -1;
  }
}
void acks();

const members: Set<number> | null = lobby.members;
const n: number | null = lobby.memberCount;
const q: number = lobby.queued;
void members; void n; void q;
console.log(rc.clientId, rc.session, rc.state, rc.closeInfo?.by, rc.rooms.get("lobby")?.epoch);
rc.connect().ready().then(() => lobby.leave());
rc.close();

// @ts-expect-error binary data cannot ask for an ack
lobby.publish(new Uint8Array(1), { ack: true });
// @ts-expect-error a message is an object
lobby.publish("text");
// @ts-expect-error no such event
rc.on("mesage", () => {});
// @ts-expect-error the room's constructor is not public: rooms come from join()
new Room(rc, "x");

// A cluster's nodes (docs/cluster.md): a list of URLs, the one in use exposed.
const multi = new RoomcastClient(["ws://a:8080/", "ws://b:8080/"], { maxDelay: 5000, connect: false });
multi.on("open", ({ url, reconnect }) => console.log(url.length, reconnect, multi.url, multi.urls[multi.urlIndex]));
multi.on("reconnecting", ({ url, delay }) => console.log(url, delay));
const viaOpts = new RoomcastClient(null, { urls: ["ws://a:8080/"], connect: false });
void viaOpts;
// @ts-expect-error URLs are strings
new RoomcastClient([1, 2]);
