// web/rtw.d.ts: hand-written TypeScript definitions of web/rtw.js (the ES
// module) and web/rtw.classic.js (window.RTW). Keep in step with rtw.js;
// the wire shapes are those of the rtw contract, version 1.1.

export type State = "idle" | "connecting" | "open" | "waiting" | "closed";
export declare const STATE: {
  readonly IDLE: "idle"; readonly CONNECTING: "connecting"; readonly OPEN: "open";
  readonly WAITING: "waiting"; readonly CLOSED: "closed";
};

export type MessageType = "broadcast" | "private" | "webhook" | "request" | "init" | "presence" | "redact";

/** One event or stored message, as the server sends it. */
export interface Message<T = unknown> {
  id?: string;
  stream_id: string;
  author_id: string;
  to_user_id?: string;
  message: T;
  timestamp: number;
  type: MessageType;
  widget_key: string | null;
  created_at?: string;
}

export interface InitMessage extends Message<{
  connection_id: string;
  last_event_id: string | null;
  resumed: boolean;
  heartbeat_s: number;
  token?: string;
}> { type: "init"; }

export interface Presence { connections: number; viewers: number; }
export interface RedactEvent extends Message<{ id: string }> { type: "redact"; }
export interface WebhookResult {
  job_id: string; url: string; status: "succeeded" | "failed";
  http_status: number | null; attempts: number; body: unknown; error: string | null;
}
export interface WebhookJob { job_id: string; status: "queued"; url: string; }

/** How a message reached the handlers. */
export interface Meta { live?: boolean; history?: boolean; older?: boolean; own?: boolean; }

export declare class RTWError extends Error {
  constructor(status: number, body?: unknown, message?: string);
  /** HTTP status, 0 for a network error */
  status: number;
  /** the contract's error code (invalid_field, unauthorized, banned, ...), or http_NNN / network_error */
  code: string;
  field: string | null;
  body: unknown;
  retryAfterMs: number | null;
}
export { RTWError as Error };

/** history on a fresh connection: false for none, N or {last: N} for the latest N */
export type HistoryOption = boolean | number | HistoryOptions | null;

export interface HistoryOptions {
  /** the latest N, in stream order (order=desc pages, turned around) */
  last?: number;
  sinceId?: string | null;
  beforeId?: string | null;
  order?: "asc" | "desc";
  limit?: number;
  fromTimestamp?: number;
  toTimestamp?: number;
  /** follow next_since_id to the end (at most historyMax messages) */
  all?: boolean;
  /** false: return the messages without handing them to on() */
  deliver?: boolean;
}

export interface HistoryPage {
  messages: Message[];
  nextSinceId: string | null;
  nextBeforeId: string | null;
}

export interface ConnectionOptions {
  stream: string;
  /** origin serving /v1; "" for the page's own */
  base?: string;
  /** origin serving the event stream when it is not base's (a stream pass-through port); default: base */
  eventsBase?: string;
  /** a JWT from the platform's backend; without one the viewer is anonymous */
  token?: string;
  /** with token: an anonymous token taken from elsewhere, dropped when refused */
  anonymous?: boolean;
  /** called before the token's exp and when it is refused; null gives up */
  refreshToken?: () => string | null | Promise<string | null>;
  getTime?: () => number;
  /** ask for presence frames (also turned on by on("presence")) */
  presence?: boolean;
  /** the widgets' default history (default {last: 100}) */
  history?: HistoryOption;
  historyMax?: number;
  maxRetries?: number;
  persist?: boolean;
  /** open mode only: sent as author_id */
  userId?: string;
  /** "auto" (fetch with a streaming body when available), "fetch" or "eventsource" */
  transport?: "auto" | "fetch" | "eventsource";
  /** ask the server for this widget key only (connect({widgetKey}) sets it) */
  filter?: string | null;
  /** replacements of the browser's, for tests */
  fetch?: typeof fetch;
  EventSource?: { new (url: string): EventSource };
  events?: EventTarget;
  isOnline?: () => boolean;
}

export interface WidgetOptions {
  history?: HistoryOption;
  getTime?: () => number;
}

export interface SendOptions {
  /** the addressee of a private */
  to?: string;
  /** video time in seconds; default getTime(), else 0 */
  timestamp?: number;
  /** kept across retries; default a fresh UUID per call */
  idempotencyKey?: string;
}

export interface BanOptions {
  /** ban from every stream, not only the connection's */
  everywhere?: boolean;
  /** ends that many seconds after it is stored (1 to ten years) */
  forS?: number;
  /** ends then (RFC 3339); neither: until unban */
  until?: string;
}
/** a ban in force; stream_id null: every stream */
export interface Ban { user_id: string; stream_id: string | null; until: string | null; created_at: string; }
export interface RetryInfo { method: string; path: string; attempt: number; status: number; code: string; waitMs: number; }
export interface DisconnectInfo { failures: number; retryInMs: number; status: number; }

interface Events {
  state: (state: State, old: State) => void;
  init: (msg: InitMessage) => void;
  identity: (userId: string | null) => void;
  reset: (info: { lastEventId: string }) => void;
  history: (messages: Message[]) => void;
  presence: (counts: Presence, frame: Message<Presence>) => void;
  redact: (redactedId: string, event: RedactEvent) => void;
  broadcast: (msg: Message, meta: Meta) => void;
  private: (msg: Message, meta: Meta) => void;
  webhook: (msg: Message<WebhookResult>, meta: Meta) => void;
  "*": (msg: Message, meta: Meta) => void;
  retry: (info: RetryInfo) => void;
  disconnect: (info: DisconnectInfo) => void;
  stall: (info: { silentMs: number }) => void;
  token: (token: string) => void;
  online: () => void;
  offline: () => void;
  error: (err: RTWError) => void;
}

declare class Emitter {
  on<E extends keyof Events>(type: E, fn: Events[E]): this;
  off<E extends keyof Events>(type: E, fn: Events[E]): this;
}

export declare class Connection extends Emitter {
  constructor(opts: ConnectionOptions);
  readonly stream: string;
  readonly state: State;
  readonly userId: string | null;
  readonly token: string | null;
  lastEventId: string | null;
  readonly connectionId: string | null;
  readonly heartbeatS: number | null;
  /** the last presence counts, or null */
  readonly viewers: Presence | null;
  readonly widgets: Widget[];
  /** resolves with the first init */
  readonly ready: Promise<InitMessage>;
  /** registers a widget by its key on this connection */
  widget(key: string, opts?: WidgetOptions): Widget;
  /** admin tokens: bans a user from this stream (everywhere: every stream); resolves with the ban */
  ban(userId: string, opts?: BanOptions): Promise<Ban>;
  /** admin tokens: lifts that ban; rejects with 404 when there is none */
  unban(userId: string, opts?: { everywhere?: boolean }): Promise<Ban>;
  close(): void;
}

export declare class Widget extends Emitter {
  readonly connection: Connection;
  readonly key: string;
  readonly state: State;
  readonly userId: string | null;
  readonly token: string | null;
  lastEventId: string | null;
  readonly connectionId: string | null;
  readonly ready: Promise<InitMessage>;
  /** true when older() may bring more (the server pages backwards) */
  readonly hasOlder: boolean;
  send(type: "broadcast" | "private" | "webhook" | "request", message: unknown, opts?: SendOptions): Promise<any>;
  publish<T>(message: T, opts?: SendOptions): Promise<Message<T>>;
  broadcast<T>(message: T, opts?: SendOptions): Promise<Message<T>>;
  sendPrivate<T>(toUserId: string, message: T, opts?: SendOptions): Promise<Message<T>>;
  webhook(spec: string | { url: string; method?: string; headers?: Record<string, string>; body?: unknown },
          opts?: SendOptions): Promise<WebhookJob | null>;
  /** DELETE a message (its author or an admin); resolves with the redact event */
  redact(id: string): Promise<RedactEvent>;
  history(opts: HistoryOptions & ({ last: number } | { all: true })): Promise<Message[]>;
  history(opts?: HistoryOptions): Promise<HistoryPage>;
  /** the page before the oldest one read, in stream order */
  older(n?: number, opts?: { deliver?: boolean }): Promise<{ messages: Message[]; more: boolean }>;
  /** unregisters the widget; the connection stays */
  close(): void;
}

export declare class SSEParser {
  constructor(onEvent: (ev: { data: string; id: string | null }) => void, onComment?: (text: string) => void);
  retry: number | null;
  push(text: string): void;
}

export declare function connect(opts: ConnectionOptions & { widgetKey: string } & WidgetOptions): Widget;
export declare function connect(opts: ConnectionOptions): Connection;
export declare function uuid4(): string;
export declare function tokenExp(token: string): number | null;

declare global {
  /** web/rtw.classic.js as a classic script */
  interface Window {
    RTW: typeof import("./rtw.js");
  }
}
