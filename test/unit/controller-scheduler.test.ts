import { parseSpec } from '../../src/api/validate.js';
import { AllocationView } from '../../src/controller/allocation.js';
import {
  FILTER_REASONS,
  filterNode,
  requestOf,
  requirementsOf,
  schedule,
  unschedulableMessage,
  type EnvRequest,
  type NodeInfo,
} from '../../src/controller/scheduler.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function node(name: string, over: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    labels: {},
    alive: true,
    unschedulable: false,
    cgroupMode: 'v2',
    controllers: ['cpu', 'memory', 'io', 'pids'],
    allocatedEnvs: 0,
    allocatedMemory: 0,
    ...over,
  };
}

const req = (over: Partial<EnvRequest> = {}): EnvRequest => ({ memoryBytes: 0, requirements: [], ...over });

describe('requirements of a spec', () => {
  it('asks for the controllers its limits need, and cgroup v2 for memory.high', () => {
    const spec = parseSpec({
      workload: { command: ['/bin/true'] },
      resources: { memory: { max: '1Gi', high: '800Mi' }, io: { weight: 100 }, pids: { max: 100 } },
    });
    expect(requirementsOf(spec).map((r) => (r.kind === 'controller' ? r.controller : 'v2'))).toEqual(['memory', 'v2', 'pids', 'io']);
    expect(requestOf(spec).memoryBytes).toBe(GiB);
  });

  it('asks for nothing with resources.bestEffort (the node skips what it cannot enforce)', () => {
    const spec = parseSpec({ workload: { command: ['/bin/true'] }, resources: { memory: { high: '1Gi' }, io: { weight: 10 }, bestEffort: true } });
    expect(requirementsOf(spec)).toEqual([]);
  });

  it('reserves no memory for an env without memory.max', () => {
    expect(requestOf(parseSpec({ workload: { command: ['/bin/true'] } })).memoryBytes).toBe(0);
  });
});

describe('filterNode', () => {
  it('honours nodeName and nodeSelector (against the Node labels)', () => {
    expect(filterNode(node('a'), req({ nodeName: 'b' }))).toBe(FILTER_REASONS.nodeName);
    expect(filterNode(node('b'), req({ nodeName: 'b' }))).toBeUndefined();
    expect(filterNode(node('a', { labels: { pool: 'ci' } }), req({ nodeSelector: { pool: 'gpu' } }))).toBe(FILTER_REASONS.nodeSelector);
    expect(filterNode(node('a', { labels: { pool: 'ci', x: 'y' } }), req({ nodeSelector: { pool: 'ci' } }))).toBeUndefined();
  });

  it('skips cordoned nodes and nodes whose agent is not alive', () => {
    expect(filterNode(node('a', { unschedulable: true }), req())).toBe(FILTER_REASONS.unschedulable);
    expect(filterNode(node('a', { alive: false }), req())).toBe(FILTER_REASONS.notAlive);
  });

  it('checks that the node can enforce what the env asks', () => {
    const io = req({ requirements: [{ kind: 'controller', controller: 'io', field: 'spec.resources.io' }] });
    expect(filterNode(node('a', { controllers: ['cpu', 'memory'] }), io)).toBe('no io controller');
    expect(filterNode(node('a', { cgroupMode: 'v1', controllers: ['cpu', 'memory', 'blkio'] }), io)).toBeUndefined();
    const high = req({ requirements: [{ kind: 'cgroupV2', field: 'spec.resources.memory.high' }] });
    expect(filterNode(node('a', { cgroupMode: 'hybrid' }), high)).toBe('cannot enforce memory.high (needs cgroup v2)');
    expect(filterNode(node('a', { cgroupMode: 'v2' }), high)).toBeUndefined();
  });

  it('checks room: env count and memory against the sum of bound memory.max', () => {
    expect(filterNode(node('a', { maxEnvs: 2, allocatedEnvs: 2 }), req())).toBe(FILTER_REASONS.tooManyEnvs);
    expect(filterNode(node('a', { maxEnvs: 2, allocatedEnvs: 1 }), req())).toBeUndefined();
    expect(filterNode(node('a', { memoryBytes: GiB, allocatedMemory: 900 * MiB }), req({ memoryBytes: 200 * MiB }))).toBe(FILTER_REASONS.insufficientMemory);
    expect(filterNode(node('a', { memoryBytes: GiB, allocatedMemory: 800 * MiB }), req({ memoryBytes: 224 * MiB }))).toBeUndefined();
  });
});

describe('schedule', () => {
  it('counts why nothing fits, like kube-scheduler', () => {
    const q = schedule(
      [node('a', { memoryBytes: GiB, allocatedMemory: GiB, labels: { pool: 'ci' } }), node('b', { memoryBytes: GiB, allocatedMemory: GiB, labels: { pool: 'ci' } }), node('c')],
      req({ memoryBytes: MiB, nodeSelector: { pool: 'ci' } }),
      'spread',
    );
    expect(q).toEqual({
      ok: false,
      message: '0/3 nodes available: 2 insufficient memory, 1 node selector mismatch.',
      reasons: { 'insufficient memory': 2, 'node selector mismatch': 1 },
    });
  });

  it('says so when no node is registered at all', () => {
    expect(unschedulableMessage(0, {})).toMatch(/^0\/0 nodes available: no DisposableNode/);
  });

  it('spread picks the least allocated node, bin-pack the most allocated that still fits', () => {
    const nodes = [node('a', { maxEnvs: 4, allocatedEnvs: 2 }), node('b', { maxEnvs: 4, allocatedEnvs: 1 }), node('c', { maxEnvs: 4, allocatedEnvs: 3 })];
    expect(schedule(nodes, req(), 'spread')).toEqual({ ok: true, node: 'b' });
    expect(schedule(nodes, req(), 'binpack')).toEqual({ ok: true, node: 'c' });
    const full = [node('a', { maxEnvs: 4, allocatedEnvs: 4 }), ...nodes.slice(1)];
    expect(schedule(full, req(), 'binpack')).toEqual({ ok: true, node: 'c' });
  });

  it('breaks ties by name so the same facts give the same decision', () => {
    expect(schedule([node('z'), node('m'), node('b')], req(), 'spread')).toEqual({ ok: true, node: 'b' });
    expect(schedule([node('z'), node('m'), node('b')], req(), 'binpack')).toEqual({ ok: true, node: 'b' });
  });

  it('with the allocation view updated on each bind, a burst spreads evenly (spread) or fills nodes in turn (bin-pack)', () => {
    for (const strategy of ['spread', 'binpack'] as const) {
      const view = new AllocationView();
      const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
      const counts: Record<string, number> = {};
      for (let i = 0; i < 1000; i++) {
        const infos = names.map((n) => node(n, { maxEnvs: 400, memoryBytes: 1000 * GiB, allocatedEnvs: view.usageOf(n).envs, allocatedMemory: view.usageOf(n).memory }));
        const p = schedule(infos, req({ memoryBytes: GiB }), strategy);
        if (!p.ok) throw new Error(p.message);
        view.assume(`ns/e${i}`, p.node, GiB);
        counts[p.node] = (counts[p.node] ?? 0) + 1;
      }
      if (strategy === 'spread') expect(counts).toEqual({ n1: 200, n2: 200, n3: 200, n4: 200, n5: 200 });
      else expect(counts).toEqual({ n1: 400, n2: 400, n3: 200 });
    }
  });
});
