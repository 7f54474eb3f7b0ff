/**
 * The real control plane and the project's CRDs, together: the API server is
 * ready, every CRD in crds/ is installed and Established, DisposableEnvs are
 * accepted or rejected by the API server itself (OpenAPI schema and CEL), and
 * every CEL rule in the CRDs has a case here that trips it and one that
 * passes at its boundary.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ApiextensionsV1Api, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, kubeConfig, kubectl, withTestNamespace } from '../helpers/kube.js';

/** hack/cluster.sh installs DENV_CRDS_DIR when set; test what it installed. */
const CRDS_DIR = process.env.DENV_CRDS_DIR ?? path.join(REPO_ROOT, 'crds');
const EXAMPLES_DIR = path.join(REPO_ROOT, 'examples');
const API_VERSION = 'disposable.dev/v1alpha1';

type Obj = Record<string, unknown>;

/** Every YAML document in the .yaml/.yml files of `dir`. */
function loadManifests(dir: string): { file: string; doc: Obj }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .flatMap((f) =>
      parseAllDocuments(readFileSync(path.join(dir, f), 'utf8'))
        .map((d) => d.toJS() as Obj | null)
        .filter((d): d is Obj => d !== null && typeof d === 'object')
        .map((doc) => ({ file: f, doc })),
    );
}

const crds = loadManifests(CRDS_DIR)
  .filter(({ doc }) => doc.kind === 'CustomResourceDefinition')
  .map(({ file, doc }) => ({ file, crd: doc as unknown as V1CustomResourceDefinition }));

interface CelRule {
  crd: string;
  /** JSON path of the schema node that carries the rule, e.g. spec.resources.memory */
  at: string;
  rule: string;
  message: string;
}

/** Collects x-kubernetes-validations from an OpenAPI schema, depth first. */
function collectRules(crd: string, schema: Obj | undefined, at: string, out: CelRule[]): CelRule[] {
  if (!schema) return out;
  for (const v of (schema['x-kubernetes-validations'] as Obj[] | undefined) ?? []) {
    out.push({ crd, at: at || '<root>', rule: String(v.rule), message: String(v.message ?? v.rule) });
  }
  for (const [k, child] of Object.entries((schema.properties as Record<string, Obj> | undefined) ?? {})) {
    collectRules(crd, child, at ? `${at}.${k}` : k, out);
  }
  if (schema.items) collectRules(crd, schema.items as Obj, `${at}[]`, out);
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    collectRules(crd, schema.additionalProperties as Obj, `${at}{}`, out);
  }
  return out;
}

const celRules = crds.flatMap(({ crd }) =>
  (crd.spec.versions ?? []).flatMap((v) => collectRules(crd.metadata?.name ?? '?', v.schema?.openAPIV3Schema as Obj | undefined, '', [])),
);

/** A DisposableEnv with the smallest valid spec, and `spec` merged over it. */
function env(name: string, spec: Obj = {}): Obj {
  return {
    apiVersion: API_VERSION,
    kind: 'DisposableEnv',
    metadata: { name },
    spec: { workload: { command: ['/bin/true'] }, ...spec },
  };
}

/** Creates `obj` in namespace `ns` through the API server (kubectl create -f -). */
async function create(ns: string, obj: Obj): Promise<{ exitCode: number; stderr: string; stdout: string }> {
  return kubectl(['create', '-n', ns, '-o', 'json', '-f', '-'], { input: JSON.stringify(obj), reject: false });
}

describe('control plane', () => {
  test('kube-apiserver answers /readyz with ok', async () => {
    const { stdout } = await kubectl(['get', '--raw', '/readyz']);
    expect(stdout).toBe('ok');
  });

  test('the admin credential is allowed everything (RBAC, system:masters)', async () => {
    const { stdout } = await kubectl(['auth', 'can-i', '*', '*', '--all-namespaces']);
    expect(stdout).toBe('yes');
  });
});

describe('CRDs from crds/', () => {
  test('crds/ holds the DisposableEnv and DisposableNode CRDs', () => {
    expect(crds.map(({ crd }) => crd.metadata?.name).sort()).toEqual(['disposableenvs.disposable.dev', 'disposablenodes.disposable.dev']);
  });

  test.each(crds.map(({ file, crd }) => [file, crd.metadata?.name ?? '?'] as const))('%s is installed, Established and its names accepted', async (_file, name) => {
    const api = kubeConfig().makeApiClient(ApiextensionsV1Api);
    const served = await api.readCustomResourceDefinition({ name });
    const status = Object.fromEntries((served.status?.conditions ?? []).map((c) => [c.type, c.status]));
    expect(status).toMatchObject({ Established: 'True', NamesAccepted: 'True' });
  });

  test('the API server accepts every CRD file as it is now, CEL rules compiled (server-side dry run)', async () => {
    const { exitCode, stderr } = await kubectl(['apply', '--server-side', '--force-conflicts', '--dry-run=server', '-f', CRDS_DIR], { reject: false });
    expect(stderr).toBe('');
    expect(exitCode).toBe(0);
  });

  test('a CRD whose CEL rule does not compile is rejected at install time (the check above means something)', async () => {
    const broken = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'brokens.test.disposable.dev' },
      spec: {
        group: 'test.disposable.dev',
        names: { kind: 'Broken', plural: 'brokens' },
        scope: 'Namespaced',
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: { spec: { type: 'object', properties: { a: { type: 'integer' } }, 'x-kubernetes-validations': [{ rule: 'self.b > 1' }] } },
              },
            },
          },
        ],
      },
    };
    const { exitCode, stderr } = await kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(broken), reject: false });
    expect(exitCode).not.toBe(0);
    expect(stderr).toMatch(/x-kubernetes-validations\[0\]\.rule: Invalid value: .*compil/);
  });
});

describe('DisposableEnv through the API server', () => {
  const ns = withTestNamespace('controlplane');

  test('a minimal env is stored with the schema defaults filled in', async () => {
    const res = await create(ns(), env('minimal'));
    expect(res.stderr).toBe('');
    const stored = JSON.parse(res.stdout) as { spec: { class: string; lifecycle: { timeoutSeconds: number; gracePeriodSeconds: number } } };
    expect(stored.spec.class).toBe('default');
    expect(stored.spec.lifecycle).toMatchObject({ timeoutSeconds: 3600, gracePeriodSeconds: 30 });
    const { stdout } = await kubectl(['get', 'denv', 'minimal', '-n', ns(), '-o', 'jsonpath={.spec.workload.command[0]}']);
    expect(stdout).toBe('/bin/true');
  });

  test('a full example env is accepted', async () => {
    const res = await create(
      ns(),
      env('ci-job-1', {
        class: 'ci-jobs',
        workload: { command: ['/bin/sh', '-c', 'make test'], env: [{ name: 'CI', value: 'true' }], workingDir: '/src', hostname: 'ci-job-1' },
        isolation: { namespaces: ['pid', 'net', 'mount', 'uts', 'ipc', 'user', 'cgroup'] },
        resources: { memory: { max: '1Gi', high: '800Mi' }, cpu: { max: '500m' }, pids: { max: 512 }, io: { weight: 100, max: [{ device: '8:0', rbps: '50Mi' }] } },
        lifecycle: { timeoutSeconds: 3600, gracePeriodSeconds: 30, ttlSecondsAfterFinished: 300, idleTimeoutSeconds: 600 },
      }),
    );
    expect(res.stderr).toBe('');
    expect(res.exitCode).toBe(0);
  });

  // examples/*invalid*.yaml are deliberately wrong (they show users the errors);
  // every other example must be accepted as it is.
  const examples = loadManifests(EXAMPLES_DIR).filter(({ doc }) => doc.kind === 'DisposableEnv');
  const exampleCases = examples.map(({ file, doc }) => [`${file}: ${String((doc.metadata as Obj | undefined)?.name)}`, file.includes('invalid'), doc] as const);
  test('examples/ has DisposableEnv examples, valid and invalid', () => {
    expect(exampleCases.filter(([, invalid]) => !invalid).length).toBeGreaterThan(0);
    expect(exampleCases.filter(([, invalid]) => invalid).length).toBeGreaterThan(0);
  });
  test.each(exampleCases)('example %s: rejected=%s by the API server (server-side dry run)', async (_label, invalid, doc) => {
    const { namespace: _ignored, ...metadata } = (doc.metadata ?? {}) as Obj;
    const { exitCode, stderr } = await kubectl(['create', '--dry-run=server', '-n', ns(), '-f', '-'], {
      input: JSON.stringify({ ...doc, metadata }),
      reject: false,
    });
    if (invalid) {
      expect(exitCode).not.toBe(0);
      // Every error line names the field it is about.
      const errors = stderr.split('\n').filter((l) => l.startsWith('* '));
      expect(errors.length).toBeGreaterThan(0);
      for (const line of errors) expect(line).toMatch(/^\* (spec|metadata)\.[\w.[\]]+: /);
    } else {
      expect(stderr).toBe('');
      expect(exitCode).toBe(0);
    }
  });

  test.each([
    ['class is not a DNS label', { class: 'CI_Jobs' }, 'spec.class'],
    ['workload is missing', { workload: undefined }, 'spec.workload'],
    ['workload.command is empty', { workload: { command: [] } }, 'spec.workload.command'],
    ['memory.max is not a quantity', { resources: { memory: { max: 'lots' } } }, 'spec.resources.memory.max'],
    ['lifecycle.timeoutSeconds is zero', { lifecycle: { timeoutSeconds: 0, gracePeriodSeconds: 0 } }, 'spec.lifecycle.timeoutSeconds'],
    ['an unknown namespace kind', { isolation: { namespaces: ['mount', 'time'] } }, 'spec.isolation.namespaces[1]'],
    ['an unknown field', { bogus: true }, 'spec.bogus'],
  ] as const)('rejected by the API server, naming the field: %s', async (_what, spec, field) => {
    const { exitCode, stderr } = await create(ns(), env('invalid', spec));
    expect(exitCode).not.toBe(0);
    expect(stderr).toContain(field);
  });
});

/**
 * One case per CEL rule in crds/, keyed by the rule's message: an object that
 * violates it (with the field path the API server must name) and one that sits
 * on the rule's boundary and must pass. A rule in the CRDs without a case here
 * fails the suite, so new rules arrive with tests.
 */
interface CelCase {
  violate: { name?: string; spec: Obj; field?: string };
  pass: { name?: string; spec: Obj };
}

/** Seeds for array items on the way to a field, so the item is otherwise valid. */
const ITEM_SEEDS: Record<string, Obj> = { 'spec.resources.io.max[]': { device: '8:0' } };

/**
 * The spec that sets the field at `at` (a rule location such as
 * spec.resources.io.max[].rbps) to `value`, building objects and one-item
 * arrays on the way.
 */
function specAt(at: string, value: unknown): Obj {
  const parts = at.split('.');
  if (parts.shift() !== 'spec') throw new Error(`specAt: ${at} is not under spec`);
  const build = (i: number, prefix: string): unknown => {
    if (i === parts.length) return value;
    const part = parts[i] as string;
    const key = part.replace(/\[\]$/, '');
    const here = `${prefix}.${part}`;
    const child = build(i + 1, here);
    return { [key]: part.endsWith('[]') ? [{ ...ITEM_SEEDS[here], ...(child as Obj) }] : child };
  };
  return build(0, 'spec') as Obj;
}

/** Field path as the API server prints it: the first item of each array. */
const fieldOf = (at: string): string => at.replace(/\[\]/g, '[0]');

/** Every int-or-string quantity field under `at` (e.g. spec.resources.io.max[].rbps), depth first. */
function collectQuantities(schema: Obj | undefined, at: string, out: string[]): string[] {
  if (!schema) return out;
  if (schema['x-kubernetes-int-or-string'] === true) out.push(at);
  for (const [k, child] of Object.entries((schema.properties as Record<string, Obj> | undefined) ?? {})) collectQuantities(child, `${at}.${k}`, out);
  if (schema.items) collectQuantities(schema.items as Obj, `${at}[]`, out);
  return out;
}

const envSchema = crds.find(({ crd }) => crd.spec.names.kind === 'DisposableEnv')?.crd.spec.versions[0]?.schema?.openAPIV3Schema as Obj | undefined;
const quantityFields = collectQuantities((envSchema?.properties as Record<string, Obj> | undefined)?.spec, 'spec', []);

// Quantities are int-or-string: the OpenAPI pattern rejects a negative string and `minimum: 0` a negative
// integer, without a CEL rule (CEL rules are evaluated on every write of an env, status writes included).
describe('quantity fields reject negative values (OpenAPI pattern + minimum)', () => {
  const ns = withTestNamespace('quantity');

  test('the DisposableEnv schema has quantity fields', () => {
    expect(quantityFields).toEqual(expect.arrayContaining(['spec.resources.memory.max', 'spec.resources.cpu.max', 'spec.resources.io.max[].rbps']));
  });

  test.each(quantityFields.map((at, i) => [at, i] as const))('%s: -1 and "-1Mi" are rejected naming the field, 0 passes', async (at, i) => {
    for (const bad of [-1, '-1Mi']) {
      const res = await create(ns(), env(`q-bad-${i}`, specAt(at, bad)));
      expect(res.exitCode).not.toBe(0);
      expect(res.stderr).toContain(`${fieldOf(at)}: Invalid value`);
    }
    const good = await create(ns(), env(`q-ok-${i}`, specAt(at, 0)));
    expect(good.stderr).toBe('');
    expect(good.exitCode).toBe(0);
  });
});

const celCases: Record<string, CelCase> = {
  "userNamespace.enabled requires 'user' in namespaces": {
    violate: { spec: { isolation: { namespaces: ['pid', 'mount'] } }, field: 'spec.isolation.userNamespace.enabled' },
    pass: { spec: { isolation: { namespaces: ['pid', 'mount'], userNamespace: { enabled: false } } } },
  },
  "namespaces must include 'mount' (the env always gets its own root filesystem)": {
    violate: { spec: { isolation: { namespaces: ['pid', 'user'] } }, field: 'spec.isolation.namespaces' },
    pass: { spec: { isolation: { namespaces: ['mount', 'user'] } } },
  },
  'high must not exceed max': {
    // Mixed units and an integer: the rule must compare quantities, not strings.
    violate: { spec: { resources: { memory: { max: '1Gi', high: 1073741825 } } }, field: 'spec.resources.memory.high' },
    pass: { spec: { resources: { memory: { max: '1Gi', high: '1024Mi' } } } },
  },
  'at least one of rbps, wbps, riops, wiops must be set': {
    violate: { spec: { resources: { io: { max: [{ device: '8:0', riops: 10 }, { device: '8:16' }] } } }, field: 'spec.resources.io.max[1]' },
    pass: { spec: { resources: { io: { max: [{ device: '8:0', riops: 10 }, { device: '8:16', wbps: '1Mi' }] } } } },
  },
  'gracePeriodSeconds must not exceed timeoutSeconds': {
    // The default grace period (30) against a shorter timeout trips it too.
    violate: { spec: { lifecycle: { timeoutSeconds: 10 } }, field: 'spec.lifecycle.gracePeriodSeconds' },
    pass: { spec: { lifecycle: { timeoutSeconds: 10, gracePeriodSeconds: 10 } } },
  },
  'idleTimeoutSeconds must not exceed timeoutSeconds': {
    violate: { spec: { lifecycle: { timeoutSeconds: 60, idleTimeoutSeconds: 61 } }, field: 'spec.lifecycle.idleTimeoutSeconds' },
    pass: { spec: { lifecycle: { timeoutSeconds: 60, idleTimeoutSeconds: 60 } } },
  },
  'localhostProfile is required when type is Localhost and forbidden otherwise': {
    violate: { spec: { security: { seccompProfile: { type: 'Localhost' } } }, field: 'spec.security.seccompProfile.localhostProfile' },
    pass: { spec: { security: { seccompProfile: { type: 'Localhost', localhostProfile: 'ci/strict.json' } } } },
  },
  'metadata.name must be a DNS label (at most 63 characters, no dots): it is the default hostname of the env': {
    violate: { name: 'has.a.dot', spec: {} },
    pass: { name: 'a'.repeat(63), spec: {} },
  },
  // Needs an update after binding; exercised by its own test below.
  'spec is immutable once the env is bound to a node, except stop and lifecycle': {
    violate: { spec: {} },
    pass: { spec: {} },
  },
};
const UPDATE_ONLY = new Set(['spec is immutable once the env is bound to a node, except stop and lifecycle']);

describe('CEL rules (x-kubernetes-validations) against the real API server', () => {
  const ns = withTestNamespace('cel');

  test('crds/ has CEL rules, and every one has a case in this file', () => {
    expect(celRules.length).toBeGreaterThan(0);
    expect(celRules.filter((r) => !(r.message in celCases)).map((r) => `${r.crd} ${r.at}: ${r.message}`)).toEqual([]);
  });

  const createCases = celRules.filter((r) => !UPDATE_ONLY.has(r.message)).map((r) => [r.at, r.message, r] as const);
  test.each(createCases)('%s: "%s" rejects a violation and passes its boundary', async (at, message) => {
    const c = celCases[message];
    if (!c) throw new Error(`no case for CEL rule "${message}"`);
    const bad = await create(ns(), env(c.violate.name ?? 'cel-violate', c.violate.spec));
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toContain(message);
    if (c.violate.field) expect(bad.stderr).toContain(`${c.violate.field}: Invalid value`);
    const good = await create(ns(), env(c.pass.name ?? `cel-pass-${createCases.findIndex(([a, m]) => a === at && m === message)}`, c.pass.spec));
    expect(good.stderr).toBe('');
    expect(good.exitCode).toBe(0);
  });

  test('spec is immutable once bound to a node, except stop and lifecycle (transition rule)', async () => {
    const name = 'bound';
    expect((await create(ns(), env(name, { class: 'ci-jobs' }))).exitCode).toBe(0);
    // Before binding the spec may change.
    await kubectl(['patch', 'denv', name, '-n', ns(), '--type=merge', '-p', JSON.stringify({ spec: { class: 'batch-jobs' } })]);
    // Bind, as the controller does, through the status subresource.
    await kubectl(['patch', 'denv', name, '-n', ns(), '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { nodeName: 'node-a' } })]);
    const changeClass = await kubectl(['patch', 'denv', name, '-n', ns(), '--type=merge', '-p', JSON.stringify({ spec: { class: 'ci-jobs' } })], { reject: false });
    expect(changeClass.exitCode).not.toBe(0);
    expect(changeClass.stderr).toContain('spec is immutable once the env is bound to a node');
    const changeCommand = await kubectl(['patch', 'denv', name, '-n', ns(), '--type=merge', '-p', JSON.stringify({ spec: { workload: { command: ['/bin/false'] } } })], { reject: false });
    expect(changeCommand.exitCode).not.toBe(0);
    // stop and lifecycle stay mutable.
    await kubectl(['patch', 'denv', name, '-n', ns(), '--type=merge', '-p', JSON.stringify({ spec: { stop: true, lifecycle: { timeoutSeconds: 120 } } })]);
    const { stdout } = await kubectl(['get', 'denv', name, '-n', ns(), '-o', 'jsonpath={.spec.stop} {.spec.lifecycle.timeoutSeconds} {.spec.class}']);
    expect(stdout).toBe('true 120 batch-jobs');
  });
});
