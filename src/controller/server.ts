/**
 * The controller's HTTP endpoints on node:http: `/healthz` (the process and its
 * event loop answer), `/readyz` (every informer has synced; says whether this
 * replica leads), `/metrics` (Prometheus text from the controller's registry).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface Probes {
  /** False once shutdown began. */
  healthy(): boolean;
  /** True when the caches are synced. */
  ready(): boolean;
  leader(): boolean;
  /** What /readyz says this process is (default: leader or standby). */
  role?(): string;
}

/** Starts the server; resolves with it once listening (port 0 picks a free port). */
export async function startServer(host: string, port: number, registry: Registry, probes: Probes): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed\n');
    switch (path) {
      case '/healthz':
      case '/livez':
        return probes.healthy() ? reply(200, 'ok\n') : reply(503, 'shutting down\n');
      case '/readyz':
        return probes.ready()
          ? reply(200, `ok (${probes.role?.() ?? (probes.leader() ? 'leader' : 'standby')})\n`)
          : reply(503, 'informers not synced\n');
      case '/metrics':
        registry.metrics().then(
          (text) => reply(200, text, registry.contentType),
          (err: unknown) => reply(500, `metrics: ${err instanceof Error ? err.message : String(err)}\n`),
        );
        return;
      default:
        return reply(404, 'not found\n');
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** The port a started server listens on. */
export function portOf(server: http.Server): number {
  return (server.address() as AddressInfo).port;
}
