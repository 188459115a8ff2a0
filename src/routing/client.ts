/**
 * A client for babeld's local control socket (protocol in protocol.ts): connect, read the
 * banner, send requests one at a time, each answered by data lines and `ok` / `no ...` / `bad`.
 * In monitor mode every data line is also an event, whether or not a request is pending.
 */
import { createConnection, type Socket } from 'node:net';
import { ScroogeError } from '../errors.js';
import { BabeldTable, parseLine, type BabeldEvent, type Banner } from './protocol.js';

export interface Reply {
  status: 'ok' | 'no' | 'bad';
  /** The text after `no`, if any. */
  message: string;
  /** Data lines that came before the status line. */
  events: BabeldEvent[];
}

/** What the supervisor needs from a control connection (the fake babeld's tests use the same). */
export interface BabeldControl {
  readonly banner: Banner;
  request(line: string, timeoutMs?: number): Promise<Reply>;
  dump(timeoutMs?: number): Promise<BabeldTable>;
  /** Switches to monitor mode: `onEvent` gets every data line from now on (a dump first). */
  monitor(onEvent: (event: BabeldEvent) => void): Promise<void>;
  /** Resolves once the connection is closed, by either side. */
  readonly closed: Promise<void>;
  close(): void;
}

const DEFAULT_TIMEOUT_MS = 3000;
/** babeld reads requests into a 1024-byte buffer (local.h LOCAL_BUFSIZE). */
const MAX_REQUEST = 1000;

export class BabeldError extends ScroogeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EBABELD', message, undefined, options);
    this.name = 'BabeldError';
  }
}

interface Pending {
  line: string;
  events: BabeldEvent[];
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class BabeldClient implements BabeldControl {
  banner: Banner = { protocol: '', version: undefined, host: undefined, myId: undefined };
  /** Lines from babeld that did not parse (counted, skipped). */
  badLines = 0;
  readonly closed: Promise<void>;

  private buffer = '';
  private readonly queue: Pending[] = [];
  private sent: Pending | undefined;
  private onEvent: ((e: BabeldEvent) => void) | undefined;
  private isClosed = false;
  private bannerDone: ((err?: Error) => void) | undefined;

  private constructor(private readonly socket: Socket, readonly path: string) {
    socket.setEncoding('utf8');
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        const err = new BabeldError(`babeld closed its control socket ${path}`);
        this.bannerDone?.(err);
        if (this.sent) this.fail(this.sent, err);
        for (const p of this.queue.splice(0)) this.fail(p, err);
        this.sent = undefined;
        resolve();
      });
    });
    socket.on('error', () => {
      // 'close' follows and fails whatever is pending.
    });
    socket.on('data', (chunk: string) => this.receive(chunk));
  }

  /** Connects and reads the banner (up to its `ok`). */
  static connect(path: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<BabeldClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path });
      const client = new BabeldClient(socket, path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new BabeldError(`no banner from babeld on ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(Object.assign(new BabeldError(`cannot connect to babeld on ${path}: ${err.message}`, { cause: err }), { errno: (err as NodeJS.ErrnoException).code }));
      });
      client.bannerDone = (err) => {
        clearTimeout(timer);
        client.bannerDone = undefined;
        if (err) reject(err);
        else if (client.banner.protocol !== '1.0') {
          socket.destroy();
          reject(new BabeldError(`babeld on ${path} speaks local protocol ${JSON.stringify(client.banner.protocol)}, not 1.0`));
        } else resolve(client);
      };
    });
  }

  request(line: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Reply> {
    if (line.includes('\n') || line.length > MAX_REQUEST) throw new TypeError(`not one babeld request line: ${JSON.stringify(line.slice(0, 60))}`);
    if (this.isClosed) return Promise.reject(new BabeldError(`babeld control socket ${this.path} is closed`));
    return new Promise((resolve, reject) => {
      const p: Pending = { line, events: [], resolve, reject, timer: undefined };
      p.timer = setTimeout(() => {
        // babeld answers in order: a lost answer leaves the stream out of step, so give up on it.
        this.fail(p, new BabeldError(`babeld did not answer "${line}" within ${timeoutMs} ms`));
        this.socket.destroy();
      }, timeoutMs);
      this.queue.push(p);
      this.pump();
    });
  }

  async dump(timeoutMs?: number): Promise<BabeldTable> {
    const reply = await this.request('dump', timeoutMs);
    if (reply.status !== 'ok') throw new BabeldError(`babeld answered "${reply.status}" to dump`);
    const table = new BabeldTable();
    for (const e of reply.events) table.apply(e);
    return table;
  }

  async monitor(onEvent: (event: BabeldEvent) => void): Promise<void> {
    this.onEvent = onEvent;
    const reply = await this.request('monitor');
    if (reply.status !== 'ok') {
      this.onEvent = undefined;
      throw new BabeldError(`babeld answered "${reply.status}" to monitor`);
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private pump(): void {
    if (this.sent || this.isClosed) return;
    const next = this.queue.shift();
    if (!next) return;
    this.sent = next;
    this.socket.write(next.line + '\n');
  }

  private fail(p: Pending, err: Error): void {
    clearTimeout(p.timer);
    p.reject(err);
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > 1 << 20) {
      // No line is this long: whatever sends it is not babeld.
      this.socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const text = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      this.line(text);
    }
  }

  private line(text: string): void {
    const r = parseLine(text);
    if (!r.ok) {
      this.badLines++;
      return;
    }
    const l = r.line;
    if (this.bannerDone) {
      if (l.type === 'banner') {
        if (l.key === 'BABEL') this.banner.protocol = l.value;
        else if (l.key === 'version') this.banner.version = l.value;
        else if (l.key === 'host') this.banner.host = l.value;
        else this.banner.myId = l.value;
      } else if (l.type === 'ok') this.bannerDone();
      else if (l.type === 'event') this.onEvent?.(l.event);
      else this.badLines++;
      return;
    }
    if (l.type === 'event') {
      this.sent?.events.push(l.event);
      this.onEvent?.(l.event);
      return;
    }
    if (l.type === 'banner') {
      this.badLines++;
      return;
    }
    const p = this.sent;
    if (!p) {
      this.badLines++; // a status line nobody asked for
      return;
    }
    this.sent = undefined;
    clearTimeout(p.timer);
    p.resolve({ status: l.type, message: l.type === 'no' ? l.message : '', events: p.events });
    this.pump();
  }
}
