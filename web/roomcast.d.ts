// TypeScript declarations for roomcast.js (the dependency-free roomcast client, an ES module
// for browsers and Node). The reference with examples is docs/client.md; the wire protocol is
// docs/protocol.md. Keep this file, docs/client.md and roomcast.js in step.

/** A JSON object as it travels in a room. */
export type JsonObject = { [key: string]: unknown };

/** A message of a room, as delivered: the publisher's object with the room, the sender's
 *  client_id and the room's msg_id added by the server. */
export interface RoomMessage extends JsonObject {
  type?: string;
  room: string;
  client_id: number;
  msg_id: number;
  binary?: undefined;
}

/** A binary message of a room, as delivered (the server's header parsed). */
export interface BinaryMessage {
  binary: true;
  room: string;
  client_id: number;
  msg_id: number;
  /** The payload, unchanged (a view into the received frame). */
  payload: Uint8Array;
}

export type Message = RoomMessage | BinaryMessage;

/** The server's answer to a join ({"type":"joined",...}). */
export interface JoinedInfo {
  type: "joined";
  room: string;
  client_id: number;
  last_msg_id: number;
  epoch: string;
  session?: string;
  /** Present when the join sent `since` (a rejoin): whether the missed messages follow. */
  recovered?: boolean;
  /** history: N — the first replayed msg_id (last_msg_id + 1 when nothing is replayed). */
  replay_from?: number;
  /** presence: true — the members' client_ids ... */
  members?: number[];
  /** ... or, in a room above the server's --presence-limit, their number. */
  member_count?: number;
}

/** {"type":"left",...}: the answer to leave(), or (with a reason) the server closing the room. */
export interface LeftInfo {
  type: "left";
  room: string;
  reason?: string;
}

/** A gap in a room's msg_id sequence. `to` is null when the server started a new history
 *  (new epoch): nothing can be said about what was missed. */
export interface Gap {
  room: string;
  from: number;
  to: number | null;
  /** "gap": missing on a live connection; "not_recovered": a rejoin could not replay what was
   *  missed; "new_epoch": the room's history was reset. */
  reason: "gap" | "not_recovered" | "new_epoch";
}

/** Server error codes (docs/protocol.md "Errors") and the client's own (local: true). */
export type ServerErrorCode =
  | "bad_json" | "not_object" | "missing_field" | "bad_field" | "not_member" | "no_such_room"
  | "reserved_type" | "too_many_rooms" | "room_limit" | "rate_limited" | "bad_binary"
  | "netsync_off" | "duplicate_key" | "state_full" | "banned";
export type LocalErrorCode =
  | "room_closed" | "queue_full" | "connection_lost" | "closed" | "replaced" | "kicked"
  | "invalid_json";

/** An error, as the server sent it ({"type":"error",...}) or as the client made it. */
export interface ErrorInfo {
  type: "error";
  code: ServerErrorCode | LocalErrorCode | (string & {});
  message?: string;
  /** The room the failed request was about. */
  room?: string;
  /** The `ack` token of the failed publish. */
  ref?: unknown;
  /** true for errors the client reports itself (never sent by the server). */
  local?: true;
  /** invalid_json: the text received. */
  data?: string;
}

/** The Error a publish's Promise rejects with (and ready()). */
export class RoomcastError extends Error {
  constructor(err: Partial<ErrorInfo> & { code: string });
  name: "RoomcastError";
  code: ErrorInfo["code"];
  room: string | null;
  ref: unknown;
  local: boolean;
  /** The error object as the server (or the client) made it. */
  error: Partial<ErrorInfo>;
}

/** {"type":"ack",...}: a publish was sequenced. */
export interface AckInfo {
  type: "ack";
  ref: unknown;
  room: string;
  msg_id: number;
  duplicate?: boolean;
}

/** What publish(msg, { ack: true }) resolves with. */
export interface AckResult {
  /** The message's msg_id (the original one for a duplicate). */
  msg_id: number;
  /** true when the room had already sequenced a message with this idempotency key. */
  duplicate: boolean;
  room: string;
  ref: unknown;
  key: string | null;
}

/** {"type":"state",...}: the latest message of each state_key, after joined (state: true). */
export interface StateInfo {
  type: "state";
  room: string;
  last_msg_id: number;
  messages: RoomMessage[];
}

/** {"type":"conflated",...}: msg_ids the server dropped for a newer message of the same key. */
export interface ConflatedInfo {
  type: "conflated";
  room: string;
  /** The key, when the server names it (roomcast's notice may gather several keys' ids). */
  state_key?: string;
  msg_ids: number[];
}

/** A presence event. "sync" is the client's own: the members of a (re)join, emitted right
 *  after "joined"; the others are the server's. */
export type PresenceEvent =
  | { type: "presence"; room: string; event: "join"; client_id: number; after_msg_id: number }
  | { type: "presence"; room: string; event: "leave"; client_id: number; after_msg_id: number;
      reason: "left" | "closed" | "dropped" | "kicked" | "replaced" | (string & {}) }
  | { type: "presence"; room: string; event: "batch"; joined: number[]; left: number[];
      member_count: number; after_msg_id: number }
  | { type: "presence"; room: string; event: "sync"; members: number[] | null; member_count: number | null };

/** Handlers a join may attach (each one is an ordinary listener of the room's event). */
export interface RoomHandlers {
  onMessage?: (msg: Message, room: Room) => void;
  onJoined?: (info: JoinedInfo, room: Room) => void;
  onGap?: (gap: Gap, room: Room) => void;
  onLeft?: (info: LeftInfo, room: Room) => void;
  onError?: (err: ErrorInfo, room: Room) => void;
  onState?: (messages: RoomMessage[], room: Room, info: StateInfo) => void;
  onPresence?: (event: PresenceEvent, room: Room) => void;
  onConflated?: (info: ConflatedInfo, room: Room) => void;
  onAck?: (ack: AckInfo, room: Room) => void;
}

/** What a join asks the server for (sent on every join of the room, rejoins included). */
export interface JoinOptions extends RoomHandlers {
  /** Replay the last N messages the room keeps after joining (late joiners). */
  history?: number;
  /** Get the room's state (latest message of each state_key) after joining. */
  state?: boolean;
  /** Latest-wins delivery of keyed messages when this client falls behind. */
  conflate?: boolean;
  /** Members in joined, then presence events. */
  presence?: boolean;
}

export interface PublishOptions {
  /** Return a Promise of the server's ack. */
  ack?: boolean;
  /** Idempotency key: a string, true for a new one (client.newKey()), false for none.
   *  Default: a new key when ack is true, none otherwise. */
  key?: string | boolean;
}

export interface RoomEvents {
  message: [msg: Message, room: Room];
  joined: [info: JoinedInfo, room: Room];
  gap: [gap: Gap, room: Room];
  left: [info: LeftInfo, room: Room];
  error: [err: ErrorInfo, room: Room];
  state: [messages: RoomMessage[], room: Room, info: StateInfo];
  presence: [event: PresenceEvent, room: Room];
  conflated: [info: ConflatedInfo, room: Room];
  ack: [ack: AckInfo, room: Room];
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface SessionInfo {
  session: string | null;
  clientId: number | null;
  previous: { session: string | null; clientId: number | null };
}

export interface ClientEvents {
  state: [state: ConnectionState];
  /** Connected; url: the URL of this connection (one of client.urls). */
  open: [info: { reconnect: boolean; url: string }];
  close: [info: CloseInfo & { willReconnect: boolean }];
  /** The next attempt is in delay ms, to url (the next of client.urls). */
  reconnecting: [info: { attempt: number; delay: number; error?: unknown; url: string }];
  session: [info: SessionInfo];
  replaced: [info: CloseInfo];
  kicked: [info: CloseInfo];
  /** The server accepted a token (each connection, each refresh). */
  authenticated: [info: AuthenticatedInfo];
  unauthenticated: [info: CloseInfo];
  token_expired: [info: CloseInfo];
  joined: [info: JoinedInfo, room: Room];
  left: [info: LeftInfo, room?: Room];
  /** A room message, or (without room) a server message of no joined room. */
  message: [msg: Message | JsonObject, room?: Room];
  gap: [gap: Gap, room: Room];
  error: [err: ErrorInfo, room?: Room];
  ack: [ack: AckInfo, room?: Room];
  presence: [event: PresenceEvent, room: Room];
  conflated: [info: ConflatedInfo, room: Room];
}

/** The small event emitter both classes share. on() returns a function that removes the
 *  handler. A handler that throws does not stop the others (the exception is rethrown in a
 *  microtask). */
declare class Emitter<E extends { [K in keyof E]: unknown[] }> {
  on<K extends keyof E>(event: K, fn: (...args: E[K]) => void): () => void;
  off<K extends keyof E>(event: K, fn: (...args: E[K]) => void): void;
  once<K extends keyof E>(event: K, fn: (...args: E[K]) => void): () => void;
  emit<K extends keyof E>(event: K, ...args: E[K]): void;
}

/** One joined room, from RoomcastClient.join(). */
export class Room extends Emitter<RoomEvents> {
  private constructor(client: RoomcastClient, name: string, opts?: JoinOptions);
  readonly client: RoomcastClient;
  readonly name: string;
  /** What every join of this room asks for (from the first join()). */
  readonly options: { history: number; state: boolean; conflate: boolean; presence: boolean };
  /** Last msg_id delivered (or covered by a state snapshot or a conflated notice). */
  lastMsgId: number;
  /** The room's epoch from the last joined. */
  epoch: string | null;
  /** joined on the current connection. */
  joined: boolean;
  /** Left, or closed by the server: publish() refuses. */
  closed: boolean;
  /** Gaps reported so far. */
  gaps: number;
  /** msg_ids reported as conflated so far. */
  conflated: number;
  /** recovered of the last joined (null: the join sent no since). */
  recovered: boolean | null;
  /** replay_from of the last joined (history: N). */
  replayFrom: number | null;
  /** presence: the members' client_ids (null: unknown, or above --presence-limit). */
  members: Set<number> | null;
  /** presence: the number of members. */
  memberCount: number | null;
  /** Publishes waiting for the room to be (re)joined. */
  readonly queued: number;

  /** With ack: a Promise of the ack, rejected with a RoomcastError. Binary data takes neither
   *  ack nor key (TypeError). */
  publish(msg: JsonObject, opts: PublishOptions & { ack: true }): Promise<AckResult>;
  /** true: sent now; false: queued until the room is joined, or refused (an "error" event
   *  says why: room_closed for a room that was left; closed, replaced or kicked for a client
   *  that stopped). */
  publish(msg: JsonObject | ArrayBuffer | ArrayBufferView, opts?: PublishOptions & { ack?: false }): boolean;
  /** ack known only at run time: one or the other. */
  publish(msg: JsonObject, opts: PublishOptions): boolean | Promise<AckResult>;
  /** Leaves the room; nothing of it is delivered afterwards. */
  leave(): void;
}

export interface ClientOptions {
  /** WebSocket implementation (default globalThis.WebSocket; in Node < 22 pass `ws`). */
  WebSocket?: unknown;
  /** Connect by itself in a microtask after the constructor (default true); false: connect(). */
  connect?: boolean;
  /** Reconnect after the connection is lost (default true). */
  reconnect?: boolean;
  /** First reconnect delay, ms (default 250). */
  minDelay?: number;
  /** Largest reconnect delay, ms (default 10000). */
  maxDelay?: number;
  /** Publishes kept per room while disconnected (default 1000); the oldest is dropped. */
  maxQueued?: number;
  /** Send since/epoch when rejoining (default true). */
  resume?: boolean;
  /** A session token (from client.session of an earlier client) to present on the first join. */
  session?: string;
  /** How long a missing msg_id of a conflate room waits for its conflated notice before it is
   *  reported as a gap, ms (default 1000). */
  conflateGrace?: number;
  /** A connection token (JWT, docs/auth.md), sent as {"type":"auth"} first on every connection. */
  token?: string;
  /** Returns a token (or a Promise of one): asked on every connection and refreshBefore ms
   *  before the token's exp, whose answer is sent as a refresh. Wins over token. */
  getToken?: () => string | Promise<string>;
  /** Ms before exp to refresh the token (default 30000; at most half its remaining life). */
  refreshBefore?: number;
  /** The list of URLs, when the constructor's url is null or undefined. */
  urls?: readonly string[];
}

export interface AuthenticatedInfo {
  /** The token's sub. */
  user: string | null;
  /** The token's exp, seconds since the epoch (null: it does not expire). */
  exp: number | null;
  clientId: number;
}

export class RoomcastClient extends Emitter<ClientEvents> {
  /** url: one URL, or a list of URLs of nodes sharing rooms (--redis, docs/cluster.md): each
   *  lost connection or failed attempt moves to the next. null/undefined: opts.urls. Throws a
   *  TypeError for an empty list or a non-string URL. */
  constructor(url: string | readonly string[] | null | undefined, opts?: ClientOptions);
  /** The URL in use (or being tried): urls[urlIndex]. */
  readonly url: string;
  /** Every URL this client may use, in the order they are tried. */
  readonly urls: readonly string[];
  /** Index in urls of the URL in use. */
  readonly urlIndex: number;
  /** The WebSocket implementation in use. */
  readonly WebSocket: unknown;
  reconnect: boolean;
  minDelay: number;
  maxDelay: number;
  maxQueued: number;
  resume: boolean;
  conflateGrace: number;
  token: string | null;
  getToken: (() => string | Promise<string>) | null;
  refreshBefore: number;
  /** The user of the server's last "authenticated" answer (the token's sub). */
  user: string | null;
  /** That token's exp, seconds since the epoch. */
  tokenExp: number | null;
  /** Joined (and joining) rooms by name. */
  readonly rooms: Map<string, Room>;
  /** This client's client_id (from joined; kept across reconnects by the session). */
  clientId: number | null;
  /** The session token of joined, presented on the first join of every new connection. */
  session: string | null;
  state: ConnectionState;
  /** Why the client stopped: by "closed" (close(), or reconnect: false), "replaced", "kicked",
   *  or, with a fixed token, "unauthenticated" (4001) or "token_expired" (4002). */
  closeInfo: (CloseInfo & { by: "closed" | "replaced" | "kicked" | "unauthenticated" |
                                "token_expired" }) | null;
  /** Failed attempts since the last good connection. */
  attempt: number;
  /** Successful reconnects so far. */
  reconnects: number;

  /** Starts connecting when idle or closed; returns the client. */
  connect(): this;
  /** Resolves once the connection is open; rejects if the client is closed for good first. */
  ready(): Promise<void>;
  /** Joins a room (or returns the Room already joined, adding the handlers). */
  join(name: string, opts?: JoinOptions): Room;
  /** A new idempotency key, unique to this client object. */
  newKey(): string;
  /** Closes for good: no reconnect; waiting acks rejected ("closed"), queued publishes dropped. */
  close(): void;
}

export default RoomcastClient;
