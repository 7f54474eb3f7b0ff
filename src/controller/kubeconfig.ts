/**
 * How the controller reaches the API server: the kubeconfig (or the in-cluster
 * service account) reduced to a server URL, TLS material and auth headers.
 *
 * Why not client-node's KubeConfig: importing @kubernetes/client-node loads all
 * of its generated API models, ~40 MB of heap and ~85 MB of RSS before the
 * controller has cached a single object — a third of the memory budget. This
 * reader handles what a controller meets in practice: certificate and key
 * (inline data or files), CA, bearer token or token file (re-read, since
 * projected service-account tokens rotate), basic auth, insecure-skip-tls-verify,
 * tls-server-name, and the in-cluster service account. Only for users with an
 * `exec` credential plugin or an `auth-provider` does it fall back to client-node
 * (imported then, and only then) for the headers.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';

/** Everything KubeClient needs to talk to one API server. */
export interface Connection {
  readonly server: string;
  readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean; servername?: string };
  /** Auth headers; called per request (cheap: cached by the caller). */
  headers(): Promise<Record<string, string>>;
  /** Where it came from, for logs. */
  readonly source: string;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

type Named<T> = { name: string } & T;
interface RawConfig {
  clusters?: Named<{ cluster: Record<string, unknown> }>[];
  users?: Named<{ user: Record<string, unknown> }>[];
  contexts?: Named<{ context: { cluster?: string; user?: string } }>[];
  'current-context'?: string;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Inline base64 `<field>-data`, else the file `<field>` (relative to the kubeconfig's directory). */
function material(obj: Record<string, unknown>, field: string, base: string): Buffer | undefined {
  const data = str(obj[`${field}-data`]);
  if (data) return Buffer.from(data, 'base64');
  const file = str(obj[field]);
  return file ? readFileSync(path.resolve(base, file)) : undefined;
}

/** A token file re-read at most every 10 s. */
function tokenFileHeaders(file: string): () => Promise<Record<string, string>> {
  let cached: { at: number; token: string } | undefined;
  return () => {
    const now = Date.now();
    if (!cached || now - cached.at > 10_000) cached = { at: now, token: readFileSync(file, 'utf8').trim() };
    return Promise.resolve({ Authorization: `Bearer ${cached.token}` });
  };
}

/** The in-cluster service account, as a Pod sees it. */
export function inClusterConnection(): Connection {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new Error('in-cluster config: KUBERNETES_SERVICE_HOST is not set (not running in a Pod?)');
  const h = host.includes(':') ? `[${host}]` : host;
  return {
    server: `https://${h}:${port}`,
    tls: { ca: readFileSync(path.join(SA_DIR, 'ca.crt')) },
    headers: tokenFileHeaders(path.join(SA_DIR, 'token')),
    source: 'in-cluster service account',
  };
}

/** Reads a kubeconfig file (the first of a `:`-separated list) and picks `context` or the current one. */
export function kubeconfigConnection(file: string, context?: string): Connection {
  const first = file.split(path.delimiter).filter(Boolean)[0] ?? file;
  const abs = path.resolve(first.replace(/^~(?=$|\/)/, os.homedir()));
  let raw: RawConfig;
  try {
    raw = (parse(readFileSync(abs, 'utf8')) ?? {}) as RawConfig;
  } catch (cause) {
    throw new Error(`kubeconfig ${abs}: cannot read it`, { cause });
  }
  const base = path.dirname(abs);
  const ctxName = context ?? raw['current-context'];
  const ctx = raw.contexts?.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new Error(`kubeconfig ${abs}: no context ${ctxName ? `"${ctxName}"` : '(current-context is not set)'}`);
  const cluster = raw.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster || !str(cluster.server)) throw new Error(`kubeconfig ${abs}: context "${ctxName}" names no cluster with a server`);
  const user = raw.users?.find((u) => u.name === ctx.user)?.user ?? {};
  const tls: Connection['tls'] = { ca: material(cluster, 'certificate-authority', base), cert: material(user, 'client-certificate', base), key: material(user, 'client-key', base) };
  if (cluster['insecure-skip-tls-verify'] === true) tls.rejectUnauthorized = false;
  const servername = str(cluster['tls-server-name']);
  if (servername) tls.servername = servername;
  let headers: () => Promise<Record<string, string>>;
  const token = str(user.token);
  const tokenFile = str(user.tokenFile);
  const username = str(user.username);
  if (token) headers = () => Promise.resolve({ Authorization: `Bearer ${token}` });
  else if (tokenFile) headers = tokenFileHeaders(path.resolve(base, tokenFile));
  else if (username) {
    const basic = Buffer.from(`${username}:${str(user.password) ?? ''}`).toString('base64');
    headers = () => Promise.resolve({ Authorization: `Basic ${basic}` });
  } else if (user.exec || user['auth-provider']) headers = pluginHeaders(abs, ctxName);
  else headers = () => Promise.resolve({});
  return { server: String(cluster.server), tls, headers, source: `kubeconfig ${abs} (context ${ctxName})` };
}

/** exec / auth-provider users: let client-node run the plugin (imported only here). */
function pluginHeaders(file: string, context: string | undefined): () => Promise<Record<string, string>> {
  return async () => {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    if (context) kc.setCurrentContext(context);
    const o: { headers?: Record<string, unknown> } = {};
    await kc.applyToHTTPSOptions(o);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.headers ?? {})) {
      if (typeof v === 'string' || typeof v === 'number') out[k] = String(v);
      else if (Array.isArray(v)) out[k] = v.map(String).join(', ');
    }
    return out;
  };
}

/** --kubeconfig, else in-cluster when in a Pod, else $KUBECONFIG, else ~/.kube/config. */
export function loadConnection(opts: { kubeconfig?: string; context?: string }): Connection {
  if (opts.kubeconfig) return kubeconfigConnection(opts.kubeconfig, opts.context);
  if (process.env.KUBERNETES_SERVICE_HOST) return inClusterConnection();
  return kubeconfigConnection(process.env.KUBECONFIG || path.join(os.homedir(), '.kube', 'config'), opts.context);
}
