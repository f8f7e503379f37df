// Starts a real redis-server and a built sessiond for the integration tests,
// with a counting proxy in front (what it counts is what reached the server's
// door) that can lose the answer to a request after the server has processed
// it, the way a dropped mobile connection does.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

/** A child process with its output kept, to show when it fails. */
class Proc {
  readonly child: ChildProcess;
  output = '';
  exited: number | string | null = null;
  constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string) {
    this.child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-8000);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    // A test run that dies must not leave its servers running.
    const reap = () => this.child.kill('SIGKILL');
    process.once('exit', reap);
    this.child.on('exit', (code, signal) => {
      this.exited = code ?? signal;
      process.off('exit', reap);
    });
  }
  signal(sig: NodeJS.Signals): void {
    if (this.exited === null) this.child.kill(sig);
  }
  async stop(): Promise<void> {
    if (this.exited !== null) return;
    const done = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(t);
  }
}

async function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      s.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
  });
}

async function waitFor(what: string, proc: Proc, ok: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (proc.exited !== null) throw new Error(`${what} exited (${proc.exited}):\n${proc.output}`);
    if (await ok().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms:\n${proc.output}`);
}

export interface Seen {
  method: string;
  path: string;
  body: string;
  status: number;
  /** false when the proxy dropped the connection instead of passing the answer on. */
  delivered: boolean;
}

/** Forwards to sessiond keeping the Host header, so `htu` is the proxy's URL. */
export class CountingProxy {
  readonly seen: Seen[] = [];
  readonly #drop = new Map<string, number>();
  readonly #server: http.Server;
  readonly #upstreamPort: number;
  url = '';

  constructor(upstreamPort: number) {
    this.#upstreamPort = upstreamPort;
    this.#server = http.createServer((req, res) => void this.#forward(req, res));
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${port}`;
  }

  /** The next `n` answers to requests for `path` are lost after the server has made them. */
  dropNext(path: string, n: number): void {
    this.#drop.set(path, n);
  }

  count(method: string, path: string): number {
    return this.seen.filter((s) => s.method === method && s.path === path).length;
  }

  reset(): void {
    this.seen.length = 0;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  async #forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const path = (req.url ?? '/').split('?')[0]!;
    const seen: Seen = { method: req.method ?? '', path, body: body.toString(), status: 0, delivered: true };
    this.seen.push(seen);
    const up = http.request(
      { host: '127.0.0.1', port: this.#upstreamPort, method: req.method, path: req.url, headers: req.headers, agent: false },
      async (upRes) => {
        const parts: Buffer[] = [];
        for await (const c of upRes) parts.push(c as Buffer);
        seen.status = upRes.statusCode ?? 0;
        const left = this.#drop.get(path) ?? 0;
        if (left > 0) {
          this.#drop.set(path, left - 1);
          seen.delivered = false;
          req.socket.destroy();
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        res.end(Buffer.concat(parts));
      },
    );
    up.on('error', (err) => {
      seen.status = 502;
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
    up.end(body);
  }
}

export interface Stack {
  /** sessiond itself. */
  directUrl: string;
  /** The proxy in front of it, which is also its PUBLIC_URL. */
  proxy: CountingProxy;
  adminUsername: string;
  adminPassword: string;
  /** The server's REFRESH_REUSE_GRACE, in milliseconds. */
  graceMs: number;
  freezeRedis(): void;
  thawRedis(): void;
  waitReady(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * redis-server on a free port, sessiond on another, the proxy on a third.
 * `graceMs` is the server's REFRESH_REUSE_GRACE: short, so the theft tests
 * need not wait 30 s past it. Second factors are on (MFA_ENCRYPTION_KEY);
 * `env` adds or overrides variables (STEP_UP_MAX_AGE, ADMIN_REQUIRES_AAL2).
 */
export async function startStack(bin: string, { graceMs = 2000, env: extra = {} }: { graceMs?: number; env?: Record<string, string> } = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'sessiond-tsclient-'));
  const procs: Proc[] = [];
  let proxy: CountingProxy | undefined;
  const stop = async () => {
    await proxy?.close();
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const redisPort = await freePort();
    const redis = new Proc('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { PATH: process.env.PATH }, dir);
    procs.push(redis);
    await waitFor('redis-server', redis, () => redisPing(redisPort));

    const apiPort = await freePort();
    const proxyPort = await freePort();
    const adminPassword = randomBytes(12).toString('base64url');
    const env = {
      PATH: process.env.PATH,
      HOME: dir,
      REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
      JWT_SECRET: randomBytes(32).toString('hex'),
      // The shortest lifetimes the server is meant to accept: the expiry
      // tests wait them out.
      ACCESS_TOKEN_TTL: '10s',
      REFRESH_REUSE_GRACE: `${graceMs / 1000}s`,
      PUBLIC_URL: `http://127.0.0.1:${proxyPort}`,
      ADMIN_USERNAME: 'admin',
      ADMIN_PASSWORD: adminPassword,
      LISTEN_ADDR: `127.0.0.1:${apiPort}`,
      BCRYPT_COST: '10',
      LOG_LEVEL: 'warn',
      MFA_ENCRYPTION_KEY: randomBytes(32).toString('hex'),
      ...extra,
    };
    const sessiond = new Proc(bin, [], env, dir);
    procs.push(sessiond);
    const directUrl = `http://127.0.0.1:${apiPort}`;
    const waitReady = () => waitFor('sessiond', sessiond, async () => (await fetch(`${directUrl}/readyz`)).status === 200);
    await waitReady();

    proxy = new CountingProxy(apiPort);
    await proxy.listen(proxyPort);
    return {
      directUrl,
      proxy,
      adminUsername: 'admin',
      adminPassword,
      graceMs,
      freezeRedis: () => redis.signal('SIGSTOP'),
      thawRedis: () => redis.signal('SIGCONT'),
      waitReady,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
