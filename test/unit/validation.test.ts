import { parseSpec, validateEnv, validateSpec, ValidationError } from '../../src/api/validate.js';
import { NAMESPACE_KINDS } from '../../src/api/constants.js';

const base = { workload: { command: ['/bin/true'] } };
/** Deep-merge a patch into the minimal valid spec. */
function spec(patch: Record<string, unknown>): Record<string, unknown> {
  const merge = (a: unknown, b: unknown): unknown => {
    if (b && typeof b === 'object' && !Array.isArray(b) && a && typeof a === 'object' && !Array.isArray(a)) {
      const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
      for (const [k, v] of Object.entries(b)) out[k] = merge(out[k], v);
      return out;
    }
    return b;
  };
  return merge(base, patch) as Record<string, unknown>;
}

describe('defaults from seed 000', () => {
  it('fills timeout 3600, grace 30, ttl 300, all seven namespaces, safe security', () => {
    const s = parseSpec(base);
    expect(s.lifecycle.timeoutSeconds).toBe(3600);
    expect(s.lifecycle.gracePeriodSeconds).toBe(30);
    expect(s.lifecycle.ttlSecondsAfterFinished).toBe(300);
    expect(s.isolation.namespaces).toEqual([...NAMESPACE_KINDS]);
    expect(s.isolation.userNamespace).toEqual({ enabled: true, size: 65536 });
    expect(s.security).toEqual({ capabilities: { add: [], drop: [] }, noNewPrivileges: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(s.class).toBe('default');
    expect(s.resources.bestEffort).toBe(false);
    expect(s.lifecycle.reclaim.onOOMKill).toBe(true);
    expect(s.stop).toBe(false);
  });

  it('accepts a full, valid spec unchanged', () => {
    const full = {
      class: 'ci-jobs',
      nodeName: 'node-1.example',
      nodeSelector: { 'kubernetes.io/arch': 'amd64' },
      workload: { command: ['/bin/sh', '-c', 'make test'], args: ['x'], env: [{ name: 'CI', value: '1' }], workingDir: '/src', hostname: 'build-42' },
      rootfs: { hostPath: '/var/lib/images/debian', readOnly: true },
      isolation: { namespaces: ['pid', 'net', 'mount'], userNamespace: { enabled: false, size: 65536 } },
      resources: { memory: { max: '1Gi', high: '800Mi', swapMax: 0 }, cpu: { max: '500m', weight: 100 }, pids: { max: 512 }, io: { weight: 100, max: [{ device: '8:0', rbps: '50Mi' }] }, bestEffort: false },
      lifecycle: { timeoutSeconds: 600, gracePeriodSeconds: 10, ttlSecondsAfterFinished: 60, idleTimeoutSeconds: 120, reclaim: { onOOMKill: true, memoryPressure: { thresholdPercent: 90, forSeconds: 30 }, pidsAtMax: { forSeconds: 10 } } },
      security: { capabilities: { add: ['NET_ADMIN'], drop: ['MKNOD'] }, noNewPrivileges: true, seccompProfile: { type: 'Localhost', localhostProfile: 'ci/strict.json' } },
      stop: false,
    };
    expect(parseSpec(full)).toEqual(full);
  });
});

// [description, patch, field path the message must name, text the message must contain]
const BAD: [string, Record<string, unknown>, string, string][] = [
  ['negative memory.max', { resources: { memory: { max: '-1Gi' } } }, 'spec.resources.memory.max', 'negative'],
  ['negative integer memory.max', { resources: { memory: { max: -5 } } }, 'spec.resources.memory.max', 'negative'],
  ['malformed memory.max', { resources: { memory: { max: '1GB' } } }, 'spec.resources.memory.max', 'quantity'],
  ['memory.max with spaces', { resources: { memory: { max: '1 Gi' } } }, 'spec.resources.memory.max', 'quantity'],
  ['memory.max too small', { resources: { memory: { max: '1Mi' } } }, 'spec.resources.memory.max', 'at least 4Mi'],
  ['memory.high above max', { resources: { memory: { max: '1Gi', high: '2Gi' } } }, 'spec.resources.memory.high', 'must not exceed spec.resources.memory.max (1Gi)'],
  ['malformed swapMax', { resources: { memory: { swapMax: 'lots' } } }, 'spec.resources.memory.swapMax', 'quantity'],
  ['negative cpu.max', { resources: { cpu: { max: '-500m' } } }, 'spec.resources.cpu.max', 'negative'],
  ['malformed cpu.max', { resources: { cpu: { max: '2cores' } } }, 'spec.resources.cpu.max', 'quantity'],
  ['cpu.max below 10m', { resources: { cpu: { max: '1m' } } }, 'spec.resources.cpu.max', 'at least 10m'],
  ['cpu.weight 0', { resources: { cpu: { weight: 0 } } }, 'spec.resources.cpu.weight', '>=1'],
  ['cpu.weight too large', { resources: { cpu: { weight: 10001 } } }, 'spec.resources.cpu.weight', '<=10000'],
  ['pids.max 0', { resources: { pids: { max: 0 } } }, 'spec.resources.pids.max', '>=1'],
  ['pids.max fractional', { resources: { pids: { max: 1.5 } } }, 'spec.resources.pids.max', 'int'],
  ['io device malformed', { resources: { io: { max: [{ device: 'sda', rbps: '1Mi' }] } } }, 'spec.resources.io.max[0].device', 'MAJOR:MINOR'],
  ['io device listed twice', { resources: { io: { max: [{ device: '8:0', rbps: '1Mi' }, { device: '8:0', wbps: '1Mi' }] } } }, 'spec.resources.io.max', 'twice'],
  ['io rbps negative', { resources: { io: { max: [{ device: '8:0', rbps: '-1' }] } } }, 'spec.resources.io.max[0].rbps', 'negative'],
  ['unknown namespace kind', { isolation: { namespaces: ['pid', 'mount', 'time'] } }, 'spec.isolation.namespaces[2]', 'pid'],
  ['namespace listed twice', { isolation: { namespaces: ['pid', 'pid', 'mount', 'user'] } }, 'spec.isolation.namespaces', 'twice'],
  ['no mount namespace', { isolation: { namespaces: ['pid', 'user'] } }, 'spec.isolation.namespaces', "'mount'"],
  ['userns without user namespace', { isolation: { namespaces: ['pid', 'mount'] } }, 'spec.isolation.userNamespace.enabled', "'user'"],
  ['class path traversal', { class: '../x' }, 'spec.class', 'DNS label'],
  ['class with underscore and capitals', { class: 'A_B' }, 'spec.class', 'DNS label'],
  ['class with shell metacharacters', { class: 'ci;rm -rf /' }, 'spec.class', 'DNS label'],
  ['class with $()', { class: '$(reboot)' }, 'spec.class', 'DNS label'],
  ['class with backtick', { class: 'a`id`' }, 'spec.class', 'DNS label'],
  ['class too long', { class: 'a'.repeat(64) }, 'spec.class', 'at most 63'],
  ['class empty', { class: '' }, 'spec.class', 'empty'],
  ['hostname over 63 characters', { workload: { hostname: 'h'.repeat(64) } }, 'spec.workload.hostname', 'at most 63'],
  ['hostname with dots', { workload: { hostname: 'a.b' } }, 'spec.workload.hostname', 'DNS label'],
  ['empty command', { workload: { command: [] } }, 'spec.workload.command', 'at least one'],
  ['command with empty program', { workload: { command: [''] } }, 'spec.workload.command[0]', 'empty'],
  ['relative workingDir', { workload: { workingDir: 'src' } }, 'spec.workload.workingDir', 'absolute'],
  ['bad env var name', { workload: { env: [{ name: '1X; rm', value: 'y' }] } }, 'spec.workload.env[0].name', 'environment variable'],
  ['rootfs with ..', { rootfs: { hostPath: '/var/lib/../../etc' } }, 'spec.rootfs.hostPath', "'..'"],
  ['relative rootfs', { rootfs: { hostPath: 'images/debian' } }, 'spec.rootfs.hostPath', 'absolute'],
  ['grace longer than timeout', { lifecycle: { timeoutSeconds: 10, gracePeriodSeconds: 30 } }, 'spec.lifecycle.gracePeriodSeconds', 'must not exceed spec.lifecycle.timeoutSeconds (10)'],
  ['idle longer than timeout', { lifecycle: { timeoutSeconds: 60, gracePeriodSeconds: 5, idleTimeoutSeconds: 120 } }, 'spec.lifecycle.idleTimeoutSeconds', 'must not exceed'],
  ['timeout zero', { lifecycle: { timeoutSeconds: 0 } }, 'spec.lifecycle.timeoutSeconds', '>=1'],
  ['negative grace', { lifecycle: { gracePeriodSeconds: -1 } }, 'spec.lifecycle.gracePeriodSeconds', '>=0'],
  ['memoryPressure without memory.max', { lifecycle: { reclaim: { memoryPressure: { thresholdPercent: 90, forSeconds: 10 } } } }, 'spec.lifecycle.reclaim.memoryPressure', 'memory.max'],
  ['pidsAtMax without pids.max', { lifecycle: { reclaim: { pidsAtMax: { forSeconds: 10 } } } }, 'spec.lifecycle.reclaim.pidsAtMax', 'pids.max'],
  ['threshold over 100%', { resources: { memory: { max: '1Gi' } }, lifecycle: { reclaim: { memoryPressure: { thresholdPercent: 150 } } } }, 'spec.lifecycle.reclaim.memoryPressure.thresholdPercent', '<=100'],
  ['unknown capability', { security: { capabilities: { add: ['SYS_GODMODE'] } } }, 'spec.security.capabilities.add[0]', 'CHOWN'],
  ['unknown seccomp profile type', { security: { seccompProfile: { type: 'Loose' } } }, 'spec.security.seccompProfile.type', 'RuntimeDefault'],
  ['seccomp profile as a bare string (the old shape)', { security: { seccompProfile: 'Default' } }, 'spec.security.seccompProfile', 'object'],
  ['Localhost without localhostProfile', { security: { seccompProfile: { type: 'Localhost' } } }, 'spec.security.seccompProfile.localhostProfile', 'required when spec.security.seccompProfile.type is Localhost'],
  ['localhostProfile with RuntimeDefault', { security: { seccompProfile: { type: 'RuntimeDefault', localhostProfile: 'a.json' } } }, 'spec.security.seccompProfile.localhostProfile', 'must not be set'],
  ['localhostProfile climbing out', { security: { seccompProfile: { type: 'Localhost', localhostProfile: '../x.json' } } }, 'spec.security.seccompProfile.localhostProfile', "without '..' segments"],
  ['localhostProfile with .. inside', { security: { seccompProfile: { type: 'Localhost', localhostProfile: 'ci/../../x.json' } } }, 'spec.security.seccompProfile.localhostProfile', 'relative path'],
  ['absolute localhostProfile', { security: { seccompProfile: { type: 'Localhost', localhostProfile: '/etc/x.json' } } }, 'spec.security.seccompProfile.localhostProfile', 'relative path'],
  ['unknown field (typo)', { resources: { memroy: { max: '1Gi' } } }, 'spec.resources.memroy', 'unknown field'],
  ['node selector bad key', { nodeSelector: { 'bad key!': 'x' } }, 'spec.nodeSelector', 'label key'],
  ['nodeName with slash', { nodeName: 'node/1' }, 'spec.nodeName', 'DNS subdomain'],
];

describe('bad specs are rejected with the field named', () => {
  it('has at least 30 cases', () => {
    expect(BAD.length).toBeGreaterThanOrEqual(30);
  });

  it.each(BAD)('%s', (_desc, patch, field, text) => {
    const r = validateSpec(spec(patch));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const hit = r.problems.find((p) => p.startsWith(`${field}:`) || p.startsWith(`${field}[`) || p.startsWith(`${field}.`));
    if (!hit) throw new Error(`no problem names ${field}; got: ${r.problems.join(' | ')}`);
    expect(hit).toContain(text);
  });
});

describe('whole manifests', () => {
  const manifest = { apiVersion: 'disposable.dev/v1alpha1', kind: 'DisposableEnv', metadata: { name: 'job-1' }, spec: base };
  it('accepts a minimal manifest', () => {
    expect(validateEnv(manifest).ok).toBe(true);
  });
  it.each([
    [{ ...manifest, kind: 'Pod' }, 'kind'],
    [{ ...manifest, apiVersion: 'v1' }, 'apiVersion'],
    [{ ...manifest, metadata: { name: 'Bad_Name' } }, 'metadata.name'],
    [{ ...manifest, spec: undefined }, 'spec'],
  ])('rejects %#', (m, field) => {
    const r = validateEnv(m);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems.some((p) => p.startsWith(`${field}:`))).toBe(true);
  });

  it('parseSpec throws a ValidationError listing every problem', () => {
    let err: unknown;
    try {
      parseSpec(spec({ class: 'A_B', lifecycle: { timeoutSeconds: 5, gracePeriodSeconds: 9 } }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).problems.length).toBeGreaterThanOrEqual(1);
    expect((err as ValidationError).message).toContain('spec.class');
  });
});

describe('validation never throws', () => {
  it('returns problems (not exceptions) for arbitrary JSON', async () => {
    const fc = (await import('fast-check')).default;
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        const r1 = validateSpec(a);
        const r2 = validateSpec({ workload: { command: ['/x'] }, resources: a, isolation: { namespaces: b }, lifecycle: b });
        for (const r of [r1, r2]) if (!r.ok) expect(r.problems.length).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });
});
