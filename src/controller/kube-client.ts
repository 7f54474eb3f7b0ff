/**
 * A small Kubernetes REST client for the controller. Why not the generated
 * client-node APIs: they open a new TLS connection per request (a fresh agent
 * each call), cannot send `application/apply-patch+yaml` without middleware,
 * give no single place to count requests, and cost ~85 MB of RSS to import.
 * This one takes a Connection (kubeconfig.ts) or a client-node KubeConfig, keeps one keep-alive connection pool (bounded, so a
 * burst queues here instead of overrunning the API server), reports every
 * request by verb, resource and status code, and turns error Status bodies into
 * ApiError with the code kept.
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Connection } from './kubeconfig.js';

function asBuffer(v: unknown): Buffer | undefined {
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v);
  return undefined;
}

/** A request the API server answered with an error Status (or that failed in transit: code 0). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly reason?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ApiError';
  }
}

/** True for a 404 (object gone). */
export function isNotFound(err: unknown): boolean {
  return err instanceof ApiError && err.code === 404;
}
/** True for a 409 (resourceVersion precondition failed, or already exists). */
export function isConflict(err: unknown): boolean {
  return err instanceof ApiError && err.code === 409;
}
/** True for a 410 (resourceVersion too old: relist). */
export function isGone(err: unknown): boolean {
  return err instanceof ApiError && err.code === 410;
}

/** Called after every request: verb (get, list, watch, create, update, patch, apply, delete), resource, HTTP code (0 = no response). */
export type RequestObserver = (verb: string, resource: string, code: number, seconds: number) => void;

export interface KubeClientOptions {
  /** Concurrent requests (sockets) to the API server. Default 64. */
  readonly maxInFlight?: number;
  /** Per-request timeout (not for watches). Default 30 s. */
  readonly timeoutMs?: number;
  readonly observer?: RequestObserver;
  /** User-Agent header. */
  readonly userAgent?: string;
}

export interface RequestOptions {
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  readonly contentType?: string;
  /** Verb for metrics when it differs from the HTTP method (apply, list, watch). */
  readonly verb?: string;
}

export interface WatchEvent<T> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: T;
}

/** A page-joined list result. */
export interface ListResult<T> {
  readonly items: T[];
  readonly resourceVersion: string;
}

/**
 * The resource a path names, for metrics: `/apis/g/v/namespaces/ns/disposableenvs/x/status`
 * → `disposableenvs/status`; `/api/v1/nodes` → `nodes`.
 */
export function resourceOf(path: string): string {
  const parts = path.split('?')[0]!.split('/').filter(Boolean);
  let i = parts[0] === 'api' ? 2 : parts[0] === 'apis' ? 3 : 0;
  if (parts[i] === 'namespaces' && parts.length > i + 2) i += 2;
  const resource = parts[i] ?? 'unknown';
  const sub = parts[i + 2];
  return sub ? `${resource}/${sub}` : resource;
}

interface Credentials {
  headers: Record<string, string>;
  fetchedAt: number;
}

const CREDENTIAL_TTL_MS = 10_000;

/** The controller's connection to the API server. */
export class KubeClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly watchAgent: http.Agent;
  private creds: Credentials | undefined;
  private readonly timeoutMs: number;
  private readonly observer: RequestObserver;
  private readonly userAgent: string;

  private constructor(
    private readonly conn: Connection,
    opts: KubeClientOptions,
  ) {
    this.base = new URL(conn.server);
    const secure = this.base.protocol === 'https:';
    const maxSockets = opts.maxInFlight ?? 64;
    // One SecureContext for every connection: without it Node parses the CA, certificate and key again for each
    // new socket (~4 ms of CPU each, paid 64 times when a burst opens the pool).
    const { ca, cert, key, rejectUnauthorized, servername } = conn.tls;
    const tlsOpts: https.AgentOptions = secure ? { secureContext: tls.createSecureContext({ ca, cert, key }), rejectUnauthorized, servername } : {};
    this.agent = secure
      ? new https.Agent({ ...tlsOpts, keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' })
      : new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
    this.watchAgent = secure ? new https.Agent({ ...tlsOpts, keepAlive: false }) : new http.Agent({ keepAlive: false });
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.observer = opts.observer ?? ((): void => undefined);
    this.userAgent = opts.userAgent ?? 'disposable-env-controller';
  }

  /** A client for a Connection (see kubeconfig.ts: what the controller uses). */
  static fromConnection(conn: Connection, opts: KubeClientOptions = {}): KubeClient {
    return new KubeClient(conn, opts);
  }

  /** A client from the current context of a client-node KubeConfig (tests, tools). */
  static async fromKubeConfig(kc: KubeConfig, opts: KubeClientOptions = {}): Promise<KubeClient> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('KubeClient: the kubeconfig has no current cluster');
    const o: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(o);
    const tls: Connection['tls'] = { ca: asBuffer(o.ca), cert: asBuffer(o.cert), key: asBuffer(o.key) };
    if (cluster.skipTLSVerify) tls.rejectUnauthorized = false;
    if (cluster.tlsServerName) tls.servername = cluster.tlsServerName;
    const headers = async (): Promise<Record<string, string>> => {
      const r: https.RequestOptions = {};
      // Re-read each time: exec plugins and projected service-account tokens rotate.
      await kc.applyToHTTPSOptions(r);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headers ?? {})) if (v !== undefined) out[k] = String(v);
      if (r.auth) out.Authorization = `Basic ${Buffer.from(r.auth).toString('base64')}`;
      return out;
    };
    return new KubeClient({ server: cluster.server, tls, headers, source: 'client-node KubeConfig' }, opts);
  }

  /** Closes pooled connections. */
  close(): void {
    this.agent.destroy();
    this.watchAgent.destroy();
  }

  private async headers(): Promise<Record<string, string>> {
    const now = Date.now();
    if (this.creds && now - this.creds.fetchedAt < CREDENTIAL_TTL_MS) return this.creds.headers;
    const headers = await this.conn.headers();
    this.creds = { headers, fetchedAt: now };
    return headers;
  }

  private url(path: string, query?: RequestOptions['query']): URL {
    const u = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u;
  }

  /** One request; resolves the parsed JSON body, rejects ApiError with the HTTP code. */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const verb = opts.verb ?? method.toLowerCase();
    const resource = resourceOf(path);
    const started = performance.now();
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const headers: Record<string, string> = { ...(await this.headers()), Accept: 'application/json', 'User-Agent': this.userAgent };
    if (body !== undefined) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const url = this.url(path, opts.query);
    const lib = url.protocol === 'https:' ? https : http;
    let code = 0;
    try {
      const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = lib.request(url, { method, headers, agent: this.agent, timeout: this.timeoutMs }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`timed out after ${this.timeoutMs} ms`)));
        req.on('error', reject);
        req.end(body);
      });
      code = status;
      const parsed = text ? (JSON.parse(text) as unknown) : undefined;
      if (status >= 200 && status < 300) return parsed as T;
      const st = (parsed ?? {}) as { message?: string; reason?: string };
      throw new ApiError(`${method} ${url.pathname}: ${status} ${st.reason ?? ''}: ${st.message ?? text.slice(0, 200)}`.replace(/ +:/, ':'), status, st.reason);
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError(`${method} ${url.pathname}: ${err instanceof Error ? err.message : String(err)}`, 0, undefined, { cause: err });
    } finally {
      this.observer(verb, resource, code, (performance.now() - started) / 1000);
    }
  }

  async get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /** Lists every page (`limit`/`continue`) into one result. */
  async list<T>(path: string, opts: { labelSelector?: string; fieldSelector?: string; pageSize?: number } = {}): Promise<ListResult<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.request<{ items?: T[]; metadata?: { resourceVersion?: string; continue?: string } }>('GET', path, {
        verb: 'list',
        query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector, limit: opts.pageSize ?? 500, continue: cont },
      });
      for (const it of page.items ?? []) items.push(it);
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  async create<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, { body, verb: 'create' });
  }

  async replace<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body, verb: 'update' });
  }

  /** JSON merge patch (RFC 7386). Put `metadata.resourceVersion` in it for optimistic concurrency. */
  async mergePatch<T>(path: string, patch: unknown): Promise<T> {
    return this.request<T>('PATCH', path, { body: patch, contentType: 'application/merge-patch+json', verb: 'patch' });
  }

  /** JSON patch (RFC 6902). */
  async jsonPatch<T>(path: string, ops: unknown[]): Promise<T> {
    return this.request<T>('PATCH', path, { body: ops, contentType: 'application/json-patch+json', verb: 'patch' });
  }

  /** Server-side apply with `fieldManager`, forcing ownership of the fields in `body`. */
  async apply<T>(path: string, body: unknown, fieldManager: string): Promise<T> {
    return this.request<T>('PATCH', path, {
      body,
      contentType: 'application/apply-patch+yaml',
      verb: 'apply',
      query: { fieldManager, force: true },
    });
  }

  /**
   * DELETE with optional preconditions (uid, resourceVersion). Resolves the object as
   * the server left it (deleting, when finalizers hold it), `true` when it went at once,
   * or `false` when it was already gone (404 is success).
   */
  async delete(path: string, preconditions?: { uid?: string; resourceVersion?: string }): Promise<{ metadata?: { resourceVersion?: string } } | boolean> {
    try {
      const out = await this.request<{ kind?: string; metadata?: { resourceVersion?: string } } | undefined>('DELETE', path, {
        verb: 'delete',
        body: preconditions ? { apiVersion: 'v1', kind: 'DeleteOptions', preconditions } : undefined,
      });
      return out && out.kind !== 'Status' ? out : true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Streams a watch until the server ends it (resolves), `signal` aborts it
   * (resolves), or it fails (rejects ApiError; 410 when the resourceVersion is
   * too old). `onEvent` is called synchronously for each event.
   */
  async watch<T>(
    path: string,
    query: { resourceVersion: string; labelSelector?: string; fieldSelector?: string; timeoutSeconds: number },
    onEvent: (ev: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const headers = { ...(await this.headers()), Accept: 'application/json', 'User-Agent': this.userAgent };
    const url = this.url(path, { ...query, watch: true, allowWatchBookmarks: true });
    const lib = url.protocol === 'https:' ? https : http;
    const resource = resourceOf(path);
    const started = performance.now();
    let code = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        if (signal.aborted) {
          resolve();
          return;
        }
        // The server ends the watch after timeoutSeconds; a silent connection is cut a little later.
        const guard = setTimeout(() => fail(new ApiError('watch: no end from the server in time', 0)), (query.timeoutSeconds + 30) * 1000);
        const onAbort = (): void => {
          req.destroy();
          resolve();
        };
        // The first failure wins: destroying the request also fires 'close' and 'error' afterwards.
        let failure: Error | undefined;
        const fail = (err: Error): void => {
          failure ??= err;
          req.destroy();
        };
        const finish = (err?: Error): void => {
          clearTimeout(guard);
          signal.removeEventListener('abort', onAbort);
          const e = failure ?? err;
          if (e && !signal.aborted) reject(e);
          else resolve();
        };
        const req = lib.request(url, { method: 'GET', headers, agent: this.watchAgent }, (res) => {
          code = res.statusCode ?? 0;
          if (code !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let st: { message?: string; reason?: string } = {};
              try {
                st = JSON.parse(text) as typeof st;
              } catch {
                // not a Status body
              }
              finish(new ApiError(`watch ${url.pathname}: ${code} ${st.reason ?? ''}: ${st.message ?? text.slice(0, 200)}`, code, st.reason));
            });
            return;
          }
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (!line.trim()) continue;
              let ev: WatchEvent<T>;
              try {
                ev = JSON.parse(line) as WatchEvent<T>;
              } catch (cause) {
                fail(new ApiError(`watch ${url.pathname}: unparsable event`, 0, undefined, { cause }));
                return;
              }
              if (ev.type === 'ERROR') {
                const st = ev.object as { code?: number; reason?: string; message?: string };
                fail(new ApiError(`watch ${url.pathname}: ${st.code ?? 0} ${st.reason ?? ''}: ${st.message ?? ''}`, st.code ?? 0, st.reason));
                return;
              }
              try {
                onEvent(ev);
              } catch (err) {
                fail(err instanceof Error ? err : new Error(String(err)));
                return;
              }
            }
          });
          res.on('end', () => finish());
          res.on('error', (err) => finish(err));
          res.on('close', () => finish());
        });
        req.on('error', (err) => finish(err instanceof ApiError ? err : new ApiError(`watch ${url.pathname}: ${err.message}`, 0, undefined, { cause: err })));
        signal.addEventListener('abort', onAbort, { once: true });
        req.end();
      });
    } finally {
      this.observer('watch', resource, code, (performance.now() - started) / 1000);
    }
  }
}
