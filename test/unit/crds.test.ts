import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { renderCrds } from '../../src/api/render.js';
import { IMMUTABLE_AFTER_BINDING_RULE } from '../../src/api/crd.js';

const crdDir = join(process.cwd(), 'crds');
const rendered = renderCrds();

type Node = Record<string, unknown>;

/** Walk every schema node with its JSON path. */
function walk(node: Node, path: string, visit: (n: Node, p: string) => void): void {
  visit(node, path);
  const props = node.properties as Record<string, Node> | undefined;
  for (const [k, v] of Object.entries(props ?? {})) walk(v, `${path}.${k}`, visit);
  if (node.items) walk(node.items as Node, `${path}[]`, visit);
  if (node.additionalProperties && typeof node.additionalProperties === 'object') walk(node.additionalProperties as Node, `${path}{}`, visit);
}

describe('committed CRDs', () => {
  it.each(Object.keys(rendered))('crds/%s equals what the schemas generate (run npm run gen:crds)', (file) => {
    const committed = readFileSync(join(crdDir, file), 'utf8');
    expect(committed).toBe(rendered[file]);
  });
});

describe.each(Object.entries(rendered))('%s is a valid structural CRD', (_file, text) => {
  const crd = parse(text) as Node;
  const spec = crd.spec as Node;
  const version = (spec.versions as Node[])[0]!;
  const schema = (version.schema as Node).openAPIV3Schema as Node;

  it('has the apiextensions v1 shape with a status subresource', () => {
    expect(crd.apiVersion).toBe('apiextensions.k8s.io/v1');
    expect(crd.kind).toBe('CustomResourceDefinition');
    expect(spec.group).toBe('disposable.dev');
    expect((crd.metadata as Node).name).toBe(`${(spec.names as Node).plural as string}.disposable.dev`);
    expect(version.name).toBe('v1alpha1');
    expect(version.served).toBe(true);
    expect(version.storage).toBe(true);
    expect(version.subresources).toEqual({ status: {} });
  });

  it('gives every node a type (or int-or-string) and a description on every leaf', () => {
    const problems: string[] = [];
    walk(schema, '', (n, p) => {
      if (n['x-kubernetes-int-or-string'] === true) {
        if (n.type !== undefined) problems.push(`${p}: int-or-string must not set type`);
        expect(n.anyOf).toEqual([{ type: 'integer' }, { type: 'string' }]);
      } else if (typeof n.type !== 'string') {
        problems.push(`${p}: no type`);
      }
      if (n.additionalProperties === false) problems.push(`${p}: additionalProperties false is not structural`);
      if (n.properties && n.additionalProperties) problems.push(`${p}: properties and additionalProperties together`);
      for (const k of ['$ref', 'oneOf', 'allOf', 'not', '$schema']) if (k in n) problems.push(`${p}: ${k} is not allowed`);
      const isLeaf = !n.properties && !n.items && p !== '' && !p.endsWith('.metadata') && !p.endsWith('{}') && !p.endsWith('[]');
      if (isLeaf && !n.description && !p.endsWith('.apiVersion') && !p.endsWith('.kind')) problems.push(`${p}: no description`);
    });
    expect(problems).toEqual([]);
  });

  it('bounds every list so CEL cost estimates stay finite', () => {
    const unbounded: string[] = [];
    walk(schema, '', (n, p) => {
      if (n.type === 'array' && typeof n.maxItems !== 'number') unbounded.push(p);
    });
    expect(unbounded).toEqual([]);
  });
});

describe('DisposableEnv CRD contract', () => {
  const crd = parse(rendered['disposable.dev_disposableenvs.yaml']!) as Node;
  const spec = crd.spec as Node;
  const version = (spec.versions as Node[])[0]!;
  const schema = (version.schema as Node).openAPIV3Schema as Node;
  const envSpec = (schema.properties as Record<string, Node>).spec!;
  const props = envSpec.properties as Record<string, Node>;

  it('has the short name denv, namespaced scope and the printer columns', () => {
    expect((spec.names as Node).shortNames).toEqual(['denv']);
    expect(spec.scope).toBe('Namespaced');
    expect((version.additionalPrinterColumns as Node[]).map((c) => c.name)).toEqual(['Phase', 'Reason', 'Node', 'Class', 'Age']);
  });

  it('carries the seed-000 defaults', () => {
    const lc = props.lifecycle!.properties as Record<string, Node>;
    expect(lc.timeoutSeconds!.default).toBe(3600);
    expect(lc.gracePeriodSeconds!.default).toBe(30);
    expect(lc.ttlSecondsAfterFinished!.default).toBe(300);
    const iso = props.isolation!.properties as Record<string, Node>;
    expect(iso.namespaces!.default).toEqual(['pid', 'net', 'mount', 'uts', 'ipc', 'user', 'cgroup']);
    expect((iso.namespaces!.items as Node).enum).toEqual(['pid', 'net', 'mount', 'uts', 'ipc', 'user', 'cgroup']);
  });

  it('has CEL rules for cross-field constraints and immutability after binding', () => {
    const mem = ((props.resources!.properties as Record<string, Node>).memory!);
    const rules = (n: Node): string[] => ((n['x-kubernetes-validations'] as Node[] | undefined) ?? []).map((r) => r.rule as string);
    expect(rules(mem).join(' ')).toContain('quantity(string(self.high)).compareTo(quantity(string(self.max))) <= 0');
    expect(rules(props.lifecycle!)).toContain('self.gracePeriodSeconds <= self.timeoutSeconds');
    expect(rules(schema)).toContain(IMMUTABLE_AFTER_BINDING_RULE);
  });

  it('requires workload.command and restricts class to a DNS label', () => {
    expect(envSpec.required).toContain('workload');
    expect((props.workload!.required as string[])).toContain('command');
    expect(props.class!.pattern).toBe('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$');
    expect(props.class!.maxLength).toBe(63);
  });
});
