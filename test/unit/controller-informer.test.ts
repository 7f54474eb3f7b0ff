/**
 * The informer's recovery logic, driven by a small HTTP server speaking the
 * list/watch protocol (the real API server's 410 is checked in
 * test/cluster/controller-reconcile.test.ts): a 410 in a watch relists at once
 * and reports deletions that happened meanwhile; a failing list is retried with
 * backoff instead of stopping; pages are joined with `continue`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import winston from 'winston';
import { Informer } from '../../src/controller/informer.js';
import { KubeClient } from '../../src/controller/kube-client.js';
import type { KubeObject } from '../../src/controller/model.js';

const quiet = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });
const obj = (name: string, rv: string): KubeObject => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });

interface Script {
  /** Answers for successive list requests. */
  lists: (() => { status: number; body: unknown })[];
  /** Lines for successive watch requests (each ends the stream). */
  watches: string[][];
}

async function serve(script: Script): Promise<{ url: string; requests: string[]; close: () => Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const watch = u.searchParams.get('watch') === 'true';
    requests.push(`${watch ? 'watch' : 'list'} rv=${u.searchParams.get('resourceVersion') ?? ''} continue=${u.searchParams.get('continue') ?? ''}`);
    if (watch) {
      const lines = script.watches.shift() ?? [];
      res.writeHead(200, { 'Content-Type': 'application/json' });
      for (const l of lines) res.write(`${l}\n`);
      res.end();
      return;
    }
    const next = script.lists.shift();
    const { status, body } = next ? next() : { status: 500, body: { kind: 'Status', code: 500, message: 'no more' } };
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(() => r())) };
}

async function client(url: string): Promise<KubeClient> {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: url, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return KubeClient.fromKubeConfig(kc);
}

const until = async (f: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('Informer', () => {
  it('joins list pages, applies watch events, and relists at once after a 410 Gone, reporting what vanished', async () => {
    const srv = await serve({
      lists: [
        () => ({ status: 200, body: { items: [obj('a', '5')], metadata: { resourceVersion: '9', continue: 'p2' } } }),
        () => ({ status: 200, body: { items: [obj('b', '6')], metadata: { resourceVersion: '9' } } }),
        // After the 410: 'a' is gone, 'b' changed, 'c' is new.
        () => ({ status: 200, body: { items: [obj('b', '30'), obj('c', '31')], metadata: { resourceVersion: '40' } } }),
      ],
      watches: [
        [JSON.stringify({ type: 'MODIFIED', object: obj('a', '10') }), JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' } })],
      ],
    });
    const c = await client(srv.url);
    const seen: string[] = [];
    const restarts: string[] = [];
    const inf = new Informer<KubeObject>(c, { name: 't', path: '/apis/g/v1/things', logger: quiet, onRestart: (r) => restarts.push(r), backoffBaseMs: 10 });
    inf.on({
      add: (o) => seen.push(`add ${o.metadata.name}@${o.metadata.resourceVersion}`),
      update: (o) => seen.push(`update ${o.metadata.name}@${o.metadata.resourceVersion}`),
      delete: (o) => seen.push(`delete ${o.metadata.name}`),
    });
    inf.start();
    await inf.waitForSync();
    await until(() => seen.includes('add c@31'));
    await inf.stop();
    await srv.close();
    c.close();
    expect(seen).toEqual(['add a@5', 'add b@6', 'update a@10', 'update b@30', 'add c@31', 'delete a']);
    expect(restarts).toContain('gone');
    expect(srv.requests.slice(0, 4)).toEqual(['list rv= continue=', 'list rv= continue=p2', 'watch rv=9 continue=', 'list rv= continue=']);
    expect([...inf.keys()].sort()).toEqual(['ns/b', 'ns/c']);
  });

  it('keeps retrying a failing list with backoff instead of stopping', async () => {
    const fail = (): { status: number; body: unknown } => ({ status: 503, body: { kind: 'Status', code: 503, reason: 'ServiceUnavailable', message: 'etcd down' } });
    const srv = await serve({
      lists: [fail, fail, fail, () => ({ status: 200, body: { items: [obj('a', '1')], metadata: { resourceVersion: '2' } } })],
      watches: [],
    });
    const c = await client(srv.url);
    const restarts: string[] = [];
    const inf = new Informer<KubeObject>(c, { name: 't', path: '/apis/g/v1/things', logger: quiet, onRestart: (r) => restarts.push(r), backoffBaseMs: 20, backoffCapMs: 100 });
    const started = Date.now();
    inf.start();
    await inf.waitForSync();
    const took = Date.now() - started;
    await inf.stop();
    await srv.close();
    c.close();
    expect(restarts).toEqual(['error', 'error', 'error']);
    expect(inf.get('ns/a')?.metadata.resourceVersion).toBe('1');
    // 20 + 40 + 80 ms (plus up to 50 % jitter): it waited, it did not spin.
    expect(took).toBeGreaterThanOrEqual(140);
  });
});
