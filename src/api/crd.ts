/**
 * Builds the two CustomResourceDefinitions from the zod schemas, so the CRD can
 * never drift from the types the code validates with. zod v4 emits OpenAPI 3.0
 * JSON Schema; this module only rewrites what Kubernetes' structural-schema
 * rules need (int-or-string quantities, no `additionalProperties: false`, no
 * JSON Schema bookkeeping keys).
 */
import { z } from 'zod';
import { ENV_KIND, ENV_PLURAL, GROUP, NODE_KIND, NODE_PLURAL, VERSION } from './constants.js';
import { EnvSpecObject, EnvStatusSchema } from './env.js';
import { NodeSpecSchema, NodeStatusSchema } from './node.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const SAFE_INT = 9007199254740991;

/** Rewrite a zod-emitted JSON Schema node (recursively) into a Kubernetes structural schema node. */
export function toStructural(node: Json): Json {
  if (Array.isArray(node)) return node.map(toStructural);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$schema' || k === 'id' || k === '$id') continue;
    if (k === 'additionalProperties' && v === false) continue;
    if ((k === 'minimum' && v === -SAFE_INT) || (k === 'maximum' && v === SAFE_INT)) continue;
    out[k] = toStructural(v);
  }
  if (out['x-kubernetes-int-or-string'] === true) {
    // Kubernetes' own shape for resource.Quantity: anyOf with bare types, pattern at the top.
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
    delete out.type;
  }
  if (out.type === 'integer' && typeof out.maximum === 'number' && out.maximum > 2 ** 31) out.format = 'int64';
  return out;
}

function schemaOf(s: z.ZodType): JsonObject {
  return toStructural(z.toJSONSchema(s, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw' }) as Json) as JsonObject;
}

/** Spec fields that may change after the env is bound to a node. */
const MUTABLE_AFTER_BINDING = ['stop', 'lifecycle'] as const;

/** CEL: once bound (status.nodeName set), only `stop` and `lifecycle` may change. */
export const IMMUTABLE_AFTER_BINDING_RULE = [
  '!has(oldSelf.status) || !has(oldSelf.status.nodeName) || (',
  [
    'self.spec.class == oldSelf.spec.class',
    'self.spec.workload == oldSelf.spec.workload',
    'self.spec.isolation == oldSelf.spec.isolation',
    'self.spec.resources == oldSelf.spec.resources',
    'self.spec.security == oldSelf.spec.security',
    'has(self.spec.rootfs) == has(oldSelf.spec.rootfs)',
    '(!has(self.spec.rootfs) || self.spec.rootfs == oldSelf.spec.rootfs)',
  ].join(' && '),
  ')',
].join('');

/** CEL: metadata.name is a DNS label. Checked on create only (see optionalOldSelf where it is used). */
export const NAME_RULE = "oldSelf.hasValue() || (self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63)";

function crd(kind: string, plural: string, scope: 'Namespaced' | 'Cluster', schema: JsonObject, extra: JsonObject): JsonObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'disposable-env' } },
    spec: {
      group: GROUP,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), ...(extra.names as JsonObject) },
      scope,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: extra.columns as Json,
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

/** The DisposableEnv CRD object. */
export function envCrd(): JsonObject {
  const schema: JsonObject = {
    type: 'object',
    description: 'A disposable system on a node: Linux namespaces plus a cgroup subtree with limits, run for a bounded time and torn down completely.',
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string', description: 'APIVersion of this object.' },
      kind: { type: 'string', description: 'Kind of this object.' },
      metadata: { type: 'object' },
      spec: schemaOf(EnvSpecObject),
      // A new env reads as Pending at once (`kubectl get`), and observedGeneration 0 behind generation 1 makes
      // kstatus (Flux, kpt) report InProgress until the controller has seen it; defaults own no field, so the
      // controller's and the agent's server-side applies replace them.
      status: { ...schemaOf(EnvStatusSchema), default: { phase: 'Pending', observedGeneration: 0 } },
    },
    'x-kubernetes-validations': [
      {
        rule: NAME_RULE,
        message: 'metadata.name must be a DNS label (at most 63 characters, no dots): it is the default hostname of the env',
        // Names are immutable, so checking on create is enough; optionalOldSelf makes the rule run on create
        // (oldSelf absent) and stop at `oldSelf.hasValue()` on every update — the API server evaluates every
        // rule on every write, status writes included, and a root-level regex match is among the dearer ones.
        optionalOldSelf: true,
      },
      {
        rule: IMMUTABLE_AFTER_BINDING_RULE,
        message: `spec is immutable once the env is bound to a node, except ${MUTABLE_AFTER_BINDING.join(' and ')}`,
      },
    ],
  };
  return crd(ENV_KIND, ENV_PLURAL, 'Namespaced', schema, {
    names: { shortNames: ['denv'], categories: ['disposable'] },
    columns: [
      { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Lifecycle phase.' },
      { name: 'Reason', type: 'string', jsonPath: '.status.reason', description: 'Why the env is in this phase.' },
      { name: 'Node', type: 'string', jsonPath: '.status.nodeName', description: 'Node the env is bound to.' },
      { name: 'Class', type: 'string', jsonPath: '.spec.class', description: 'Env class.' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  });
}

/** The DisposableNode CRD object. */
export function nodeCrd(): JsonObject {
  const schema: JsonObject = {
    type: 'object',
    description: "A node's disposable-env agent: what the host can enforce, its capacity, and its last garbage-collection pass.",
    properties: {
      apiVersion: { type: 'string', description: 'APIVersion of this object.' },
      kind: { type: 'string', description: 'Kind of this object.' },
      metadata: { type: 'object' },
      spec: { ...schemaOf(NodeSpecSchema), default: NodeSpecSchema.parse({}) as Json },
      status: schemaOf(NodeStatusSchema),
    },
  };
  return crd(NODE_KIND, NODE_PLURAL, 'Cluster', schema, {
    names: { shortNames: ['dnode'], categories: ['disposable'] },
    columns: [
      { name: 'Mode', type: 'string', jsonPath: '.status.cgroupMode', description: 'cgroup mode.' },
      { name: 'Runtime', type: 'string', jsonPath: '.status.runtime.name' },
      { name: 'Envs', type: 'integer', jsonPath: '.status.allocated.envs' },
      { name: 'Max', type: 'integer', jsonPath: '.status.capacity.maxEnvs' },
      { name: 'Last-GC', type: 'date', jsonPath: '.status.lastGC.time' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  });
}

/** Both CRDs keyed by the file name they are written to under crds/. */
export function allCrds(): Record<string, JsonObject> {
  return {
    [`${GROUP}_${ENV_PLURAL}.yaml`]: envCrd(),
    [`${GROUP}_${NODE_PLURAL}.yaml`]: nodeCrd(),
  };
}
