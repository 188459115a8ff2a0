/**
 * The control socket: a unix socket (mode 0600) on which the daemon answers the CLI.
 * One JSON request per connection, one JSON answer:
 *   -> {"cmd":"neighbors","args":{...}}
 *   <- {"ok":true,"result":...}  |  {"ok":false,"error":{"code":"...","message":"...","hint":"..."}}
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ScroogeError } from '../errors.js';

export type ControlHandler = (cmd: string, args: Record<string, unknown>) => Promise<unknown>;

const MAX_REQUEST_BYTES = 64 * 1024;

/** Does something answer on this socket? */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class ControlServer {
  private server: Server | undefined;
  private readonly connections = new Set<Socket>();

  constructor(private readonly path: string, private readonly handler: ControlHandler, private readonly log?: Logger) {}

  async start(): Promise<void> {
    if (existsSync(this.path)) {
      if (await socketAnswers(this.path))
        throw new ScroogeError('ERUNNING', `another scrooge agent answers on ${this.path}`, 'stop it first, or give this one its own "controlSocket"');
      unlinkSync(this.path); // left by an agent that crashed
    }
    const server = createServer({ allowHalfOpen: true }, (conn) => {
      let buf = '';
      this.connections.add(conn);
      conn.on('close', () => this.connections.delete(conn));
      conn.setEncoding('utf8');
      conn.setTimeout(5000, () => conn.destroy());
      conn.on('error', () => conn.destroy());
      // A client that hangs up without a request (a liveness probe) gets our end closed too.
      conn.on('end', () => {
        if (!buf.includes('\n')) conn.end();
      });
      const onData = (chunk: string) => {
        buf += chunk;
        if (buf.length > MAX_REQUEST_BYTES) conn.destroy();
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        conn.off('data', onData); // one request per connection: anything after it is ignored
        void this.answer(buf.slice(0, nl), (text) => conn.end(text + '\n'));
      };
      conn.on('data', onData);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new ScroogeError('ECONTROL', `cannot listen on control socket ${this.path}: ${err.code ?? err.message}`, 'check that its directory exists and is writable')));
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  private async answer(line: string, reply: (text: string) => void): Promise<void> {
    let req: { cmd?: unknown; args?: unknown };
    try {
      req = JSON.parse(line) as typeof req;
    } catch {
      reply(JSON.stringify({ ok: false, error: { code: 'EREQUEST', message: 'request is not JSON' } }));
      return;
    }
    if (typeof req.cmd !== 'string') {
      reply(JSON.stringify({ ok: false, error: { code: 'EREQUEST', message: 'request has no "cmd"' } }));
      return;
    }
    try {
      const args = typeof req.args === 'object' && req.args !== null ? (req.args as Record<string, unknown>) : {};
      const result = await this.handler(req.cmd, args);
      reply(JSON.stringify({ ok: true, result }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
    } catch (err) {
      const e = err as ScroogeError;
      if (!(err instanceof ScroogeError)) this.log?.error({ err, cmd: req.cmd }, 'control command failed');
      reply(JSON.stringify({ ok: false, error: { code: e.code ?? 'EINTERNAL', message: e.message, ...(e.hint ? { hint: e.hint } : {}) } }));
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    // Do not wait for clients: a stop must finish within its 2 s budget.
    for (const c of this.connections) c.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** Sends one request to a daemon; errors are ScroogeErrors a person can act on. */
export function controlRequest(path: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    let buf = '';
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    s.setEncoding('utf8');
    const timer = setTimeout(() => {
      s.destroy();
      settle(() => reject(new ScroogeError('ETIMEDOUT', `the scrooge agent on ${path} did not answer within ${timeoutMs / 1000} s`)));
    }, timeoutMs);
    s.on('connect', () => s.write(JSON.stringify({ cmd, args }) + '\n'));
    s.on('data', (d: string) => { buf += d; });
    s.on('error', (err: NodeJS.ErrnoException) => settle(() => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
        reject(new ScroogeError('ENOTRUNNING', `the scrooge agent is not running (nothing answers on ${path})`, 'start it with `scrooge run --config FILE`, or point --socket at its control socket'));
      else if (err.code === 'EACCES')
        reject(new ScroogeError('EACCES', `no permission to use ${path}`, 'run the command as the user that runs the agent (usually root)'));
      else reject(new ScroogeError('ECONTROL', `control socket ${path}: ${err.message}`));
    }));
    s.on('close', () => settle(() => {
      if (!buf) {
        reject(new ScroogeError('ECONTROL', `the agent on ${path} closed the connection without answering`, 'is it stopping? see its log'));
        return;
      }
      let answer: { ok: boolean; result?: unknown; error?: { code: string; message: string; hint?: string } };
      try {
        answer = JSON.parse(buf) as typeof answer;
      } catch {
        reject(new ScroogeError('ECONTROL', `the agent on ${path} sent an unreadable answer`));
        return;
      }
      if (answer.ok) resolve(answer.result);
      else reject(new ScroogeError(answer.error?.code ?? 'EAGENT', answer.error?.message ?? 'the agent refused', answer.error?.hint));
    }));
  });
}
