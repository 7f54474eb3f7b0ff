/**
 * The DisposableEnv API: the single source of truth for its TypeScript types,
 * for validation in the CLI, controller and agent, and (through gen-crds.ts) for
 * the CRD's OpenAPI schema and CEL rules. Defaults follow seed 000's templates.
 */
import { z } from 'zod';
import {
  CAPABILITIES,
  CONDITION_TYPES,
  DEFAULT_CAPABILITIES,
  NAMESPACE_KINDS,
  PHASES,
  REASONS,
} from './constants.js';
import { NONNEGATIVE_QUANTITY_PATTERN, QUANTITY_PATTERN, compareQuantities, formatBytes, isQuantity, toBytes, toMillicores } from '../core/quantity.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEVICE = /^[0-9]+:[0-9]+$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const APPARMOR_NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-/]*$/;

/** A DNS-1123 label: what cgroup directory names and hostnames must be. */
export const dnsLabel = (): z.ZodString =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(63, 'must be at most 63 characters')
    .regex(DNS_LABEL, "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit");

/** An absolute, normalised path with no `..` segment, NUL or newline: safe to hand to the host. */
export const absolutePath = (): z.ZodString =>
  z
    .string()
    .max(4096)
    .refine((p) => p.startsWith('/'), 'must be an absolute path')
    .refine((p) => !p.split('/').some((seg) => seg === '..' || seg === '.'), "must not contain '.' or '..' segments")
    .refine((p) => !/[\0\n\r]/.test(p), 'must not contain NUL or newline characters');

/**
 * An object field that defaults to itself with every nested default filled in.
 * The CRD must carry the filled-in value: the API server checks CEL rules against
 * a default as written, without applying nested defaults first.
 */
function filled<T extends z.ZodType>(schema: T): z.ZodDefault<T> {
  return schema.default(() => schema.parse({}) as z.util.NoUndefined<z.core.output<T>>);
}

/** A Kubernetes quantity (int-or-string) that must be non-negative. */
const quantity = (description: string): z.ZodType<string | number> =>
  z
    .union([
      z.int().nonnegative('must not be negative'),
      z
        .string()
        .refine((s) => !s.startsWith('-'), 'must not be negative')
        .regex(new RegExp(QUANTITY_PATTERN), 'must be a Kubernetes quantity such as 512Mi, 1Gi, 500m or 1.5'),
    ])
    .meta({
      description,
      'x-kubernetes-int-or-string': true,
      pattern: NONNEGATIVE_QUANTITY_PATTERN,
      // The pattern only applies to strings; `minimum` only to integers: together they reject every negative
      // quantity. (A CEL rule here was evaluated on every write of the env, status writes included.)
      minimum: 0,
    });

const positiveInt = (max: number): z.ZodInt => z.int().min(1).max(max);

export const MemorySchema = z
  .strictObject({
    max: quantity('Hard memory limit (cgroup v2 memory.max, v1 memory.limit_in_bytes). Exceeding it triggers the OOM killer. Example: 1Gi.').optional(),
    high: quantity('Memory throttling threshold (cgroup v2 memory.high): reclaim pressure without killing. cgroup v2 only. Must not exceed max. Example: 800Mi.').optional(),
    swapMax: quantity('Swap limit (cgroup v2 memory.swap.max; on v1 added to max as memory.memsw.limit_in_bytes). Example: 0.').optional(),
  })
  .meta({
    description: 'Memory limits for the whole env cgroup subtree.',
    'x-kubernetes-validations': [
      {
        rule: '!has(self.high) || !has(self.max) || quantity(string(self.high)).compareTo(quantity(string(self.max))) <= 0',
        message: 'high must not exceed max',
        fieldPath: '.high',
      },
    ],
  });

export const CpuSchema = z
  .strictObject({
    max: quantity('CPU limit in cores or millicores, written as cgroup v2 cpu.max "quota period" with a 100ms period (v1 cpu.cfs_quota_us). Example: 500m or 1.5.').optional(),
    weight: positiveInt(10000).describe('Relative CPU weight, cgroup v2 cpu.weight scale 1-10000 (default 100); converted to cpu.shares on v1.').optional(),
  })
  .meta({ description: 'CPU limits.' });

export const IoDeviceSchema = z
  .strictObject({
    device: z.string().regex(DEVICE, 'must be a block device number MAJOR:MINOR, e.g. 8:0').describe('Block device as MAJOR:MINOR, e.g. 8:0.'),
    rbps: quantity('Read bytes per second limit. Example: 50Mi.').optional(),
    wbps: quantity('Write bytes per second limit. Example: 20Mi.').optional(),
    riops: positiveInt(10_000_000).describe('Read I/O operations per second limit.').optional(),
    wiops: positiveInt(10_000_000).describe('Write I/O operations per second limit.').optional(),
  })
  .meta({
    description: 'Per-device I/O limit (cgroup v2 io.max line, v1 blkio.throttle.*).',
    'x-kubernetes-validations': [
      { rule: 'has(self.rbps) || has(self.wbps) || has(self.riops) || has(self.wiops)', message: 'at least one of rbps, wbps, riops, wiops must be set' },
    ],
  });

export const IoSchema = z
  .strictObject({
    weight: positiveInt(10000).describe('Relative I/O weight, cgroup v2 io.weight scale 1-10000; converted to blkio.weight on v1.').optional(),
    max: z.array(IoDeviceSchema).max(16).describe('Per-device bandwidth and IOPS limits.').optional(),
  })
  .meta({ description: 'Block I/O limits.' });

export const ResourcesSchema = z
  .strictObject({
    memory: MemorySchema.optional(),
    cpu: CpuSchema.optional(),
    pids: z
      .strictObject({ max: positiveInt(4_194_304).describe('Maximum number of tasks (processes and threads) in the env; contains fork bombs.').optional() })
      .meta({ description: 'Process-count limit (pids controller).' })
      .optional(),
    io: IoSchema.optional(),
    bestEffort: z
      .boolean()
      .default(false)
      .describe('When true, a limit this node cannot enforce (e.g. memory.high on cgroup v1) is skipped and reported instead of failing the env.'),
  })
  .meta({ description: 'Resource limits for the env cgroup subtree. A limit left unset gets the default of the node (agent flag --default-limits), if the node can enforce it; a limit above the cap of the node (--max-limits) is refused.' });

export const WorkloadSchema = z
  .strictObject({
    command: z
      .array(z.string().min(1, 'must not be empty').max(4096))
      .min(1, 'must have at least one element')
      .max(256)
      .describe('Program and leading arguments, run directly (no shell). Example: ["/bin/sh", "-c", "make test"].'),
    args: z.array(z.string().max(4096)).max(1024).describe('Further arguments appended to command.').optional(),
    env: z
      .array(
        z
          .strictObject({
            name: z.string().min(1).max(256).regex(ENV_VAR_NAME, 'must be a valid environment variable name').describe('Variable name.'),
            value: z.string().max(32768).default('').describe('Variable value.'),
          })
          .meta({ description: 'One environment variable.' }),
      )
      .max(256)
      .describe('Environment variables for the workload.')
      .optional(),
    workingDir: absolutePath().describe('Working directory inside the env. Default /.').optional(),
    hostname: dnsLabel().describe('Hostname inside the env (UTS namespace). Defaults to the env name.').optional(),
  })
  .meta({ description: 'What runs inside the env.' });

export const RootfsSchema = z
  .strictObject({
    hostPath: absolutePath().describe('Directory on the node used as the env root filesystem.'),
    readOnly: z.boolean().default(false).describe('Mount the root filesystem read-only.'),
  })
  .meta({ description: "Root filesystem. Omitted: the host's root, read-only, with fresh /proc, /dev and a tmpfs /tmp." });

export const UserNamespaceSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Map root inside the env to an unprivileged host uid/gid range.'),
    hostIdStart: z.int().min(1).max(4_294_967_295 - 65536).describe('First host uid/gid of the range; chosen by the node when unset.').optional(),
    size: z.int().min(1).max(65536).default(65536).describe('Number of ids mapped.'),
  })
  .meta({ description: 'User-namespace id mapping.' });

export const IsolationSchema = z
  .strictObject({
    namespaces: z
      .array(z.enum(NAMESPACE_KINDS))
      .max(7)
      .default([...NAMESPACE_KINDS])
      .describe('Linux namespaces the env gets: a subset of pid, net, mount, uts, ipc, user, cgroup. Default all seven.')
      .meta({ 'x-kubernetes-list-type': 'set' }),
    userNamespace: filled(UserNamespaceSchema),
  })
  .meta({
    description: 'Namespace isolation.',
    'x-kubernetes-validations': [
      { rule: "!self.userNamespace.enabled || 'user' in self.namespaces", message: "userNamespace.enabled requires 'user' in namespaces", fieldPath: '.userNamespace.enabled' },
      { rule: "'mount' in self.namespaces", message: "namespaces must include 'mount' (the env always gets its own root filesystem)", fieldPath: '.namespaces' },
    ],
  });

export const ReclaimSchema = z
  .strictObject({
    onOOMKill: z.boolean().default(true).describe('End the env with reason OOMKilled when the kernel OOM-kills any process in it.'),
    memoryPressure: z
      .strictObject({
        thresholdPercent: z.int().min(1).max(100).default(90).describe('Memory usage as a percentage of memory.max.'),
        forSeconds: z.int().min(1).max(86400).default(60).describe('How long usage must stay above the threshold.'),
      })
      .meta({ description: 'End the env with reason ResourceExceeded when memory stays above a fraction of memory.max. Needs resources.memory.max.' })
      .optional(),
    pidsAtMax: z
      .strictObject({
        forSeconds: z.int().min(1).max(86400).default(30).describe('How long the task count must stay at pids.max.'),
      })
      .meta({ description: 'End the env with reason ResourceExceeded when the task count stays at pids.max. Needs resources.pids.max.' })
      .optional(),
  })
  .meta({ description: 'Reclaim policies driven by kernel signals.' });

export const LifecycleSchema = z
  .strictObject({
    timeoutSeconds: z.int().min(1).max(604800).default(3600).describe('Deadline from start; then SIGTERM, the grace period, and a kill of the whole cgroup (reason DeadlineExceeded).'),
    gracePeriodSeconds: z.int().min(0).max(3600).default(30).describe('Time between SIGTERM and killing the whole cgroup. Must not exceed timeoutSeconds.'),
    ttlSecondsAfterFinished: z.int().min(0).max(2592000).default(300).describe('How long the finished DisposableEnv (status, log tail) is kept before it is deleted.'),
    idleTimeoutSeconds: z.int().min(10).max(604800).describe('Reclaim (reason IdleTimeout) when the kernel sees no CPU, I/O or network activity for this long.').optional(),
    reclaim: filled(ReclaimSchema),
  })
  .meta({
    description: 'Bounded lifetime.',
    'x-kubernetes-validations': [
      { rule: 'self.gracePeriodSeconds <= self.timeoutSeconds', message: 'gracePeriodSeconds must not exceed timeoutSeconds', fieldPath: '.gracePeriodSeconds' },
      { rule: '!has(self.idleTimeoutSeconds) || self.idleTimeoutSeconds <= self.timeoutSeconds', message: 'idleTimeoutSeconds must not exceed timeoutSeconds', fieldPath: '.idleTimeoutSeconds' },
    ],
  });

export const CapabilitiesSchema = z
  .strictObject({
    add: z.array(z.enum(CAPABILITIES)).max(41).default([]).describe('Capabilities added to the default set.').meta({ 'x-kubernetes-list-type': 'set' }),
    drop: z
      .array(z.enum([...CAPABILITIES, 'ALL']))
      .max(42)
      .default([])
      .describe(`Capabilities removed; ALL removes every one. Default set: ${DEFAULT_CAPABILITIES.join(', ')}.`)
      .meta({ 'x-kubernetes-list-type': 'set' }),
  })
  .meta({ description: 'Capability bounding set changes.' });

/** A relative path with no empty, `.` or `..` segment (RE2 has no lookahead, so a segment is spelled out): a Localhost profile stays inside the node's profile directory. */
const PROFILE_PATH = /^([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)(\/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))*$/; // RE2-compatible (the CRD pattern): no lookahead

export const SeccompProfileSchema = z
  .strictObject({
    type: z
      .enum(['RuntimeDefault', 'Unconfined', 'Localhost'])
      .describe(
        'RuntimeDefault: the project\'s allow-list (docs/seccomp.md); unknown syscalls get ENOSYS, io_uring, the keyring, bpf, userfaultfd, new namespaces, the mount family, modules, kexec, clock setting and perf_event_open get EPERM. Unconfined: no seccomp filter. Localhost: the profile file localhostProfile in the node\'s seccomp profile directory.',
      ),
    localhostProfile: z
      .string()
      .min(1)
      .max(1024)
      .regex(PROFILE_PATH, "must be a relative path inside the node's seccomp profile directory, without '..' segments")
      .describe("With type Localhost: path of the profile, relative to the node's seccomp profile directory (the agent's --seccomp-profile-dir, default /var/lib/disposable-env/seccomp). Required for Localhost, forbidden otherwise.")
      .optional(),
  })
  .meta({
    description: 'Seccomp filter of the workload, shaped like Kubernetes\' securityContext.seccompProfile.',
    'x-kubernetes-validations': [
      { rule: "self.type == 'Localhost' ? has(self.localhostProfile) : !has(self.localhostProfile)", message: 'localhostProfile is required when type is Localhost and forbidden otherwise', fieldPath: '.localhostProfile' },
    ],
  });

export const SecuritySchema = z
  .strictObject({
    capabilities: filled(CapabilitiesSchema),
    noNewPrivileges: z.boolean().default(true).describe('Set no_new_privs: setuid binaries cannot gain privileges.'),
    seccompProfile: SeccompProfileSchema.default({ type: 'RuntimeDefault' }),
    appArmorProfile: z.string().max(256).regex(APPARMOR_NAME, 'must be an AppArmor profile name').describe('AppArmor profile to apply, if the node has AppArmor.').optional(),
  })
  .meta({ description: 'Security settings applied to the workload.' });

export const EnvSpecObject = z
  .strictObject({
    class: dnsLabel().default('default').describe('Groups envs in the node cgroup tree (<root>/<class>/<env>), e.g. ci-jobs, preview-envs, batch-jobs.'),
    nodeName: z.string().max(253).regex(DNS_SUBDOMAIN, 'must be a DNS subdomain (a node name)').describe('Run on this node only.').optional(),
    nodeSelector: z
      .record(z.string().max(317).regex(LABEL_KEY, 'must be a label key'), z.string().max(63).regex(LABEL_VALUE, 'must be a label value'))
      .describe("Run only on nodes whose labels match all of these.")
      .optional(),
    workload: WorkloadSchema,
    rootfs: RootfsSchema.optional(),
    isolation: filled(IsolationSchema),
    resources: filled(ResourcesSchema),
    lifecycle: filled(LifecycleSchema),
    security: filled(SecuritySchema),
    stop: z.boolean().default(false).describe('Set to true to stop the env now (reason Stopped); the resource stays until its TTL.'),
  })
  .meta({ description: 'Desired disposable environment.' });

/** The spec with every cross-field rule applied; parse specs with this. */
export const EnvSpecSchema = EnvSpecObject.superRefine(crossFieldRules);

/** The rules that span fields, mirrored by the CEL rules in the CRD. */
function crossFieldRules(spec: z.infer<typeof EnvSpecObject>, ctx: z.core.$RefinementCtx): void {
  // zod runs refinements even after a field failed; cross-field rules only make sense on a well-typed spec.
  if (!EnvSpecObject.safeParse(spec).success) return;
  const mem = spec.resources.memory;
  if (mem?.high !== undefined && mem.max !== undefined && safeCompare(mem.high, mem.max) > 0) {
    ctx.addIssue({ code: 'custom', path: ['resources', 'memory', 'high'], message: `must not exceed spec.resources.memory.max (${mem.max})` });
  }
  const lc = spec.lifecycle;
  if (lc.gracePeriodSeconds > lc.timeoutSeconds) {
    ctx.addIssue({ code: 'custom', path: ['lifecycle', 'gracePeriodSeconds'], message: `must not exceed spec.lifecycle.timeoutSeconds (${lc.timeoutSeconds})` });
  }
  if (lc.idleTimeoutSeconds !== undefined && lc.idleTimeoutSeconds > lc.timeoutSeconds) {
    ctx.addIssue({ code: 'custom', path: ['lifecycle', 'idleTimeoutSeconds'], message: `must not exceed spec.lifecycle.timeoutSeconds (${lc.timeoutSeconds})` });
  }
  if (lc.reclaim.memoryPressure && mem?.max === undefined) {
    ctx.addIssue({ code: 'custom', path: ['lifecycle', 'reclaim', 'memoryPressure'], message: 'needs spec.resources.memory.max to be set' });
  }
  if (lc.reclaim.pidsAtMax && spec.resources.pids?.max === undefined) {
    ctx.addIssue({ code: 'custom', path: ['lifecycle', 'reclaim', 'pidsAtMax'], message: 'needs spec.resources.pids.max to be set' });
  }
  const sp = spec.security.seccompProfile;
  if (sp.type === 'Localhost' && sp.localhostProfile === undefined) {
    ctx.addIssue({ code: 'custom', path: ['security', 'seccompProfile', 'localhostProfile'], message: 'is required when spec.security.seccompProfile.type is Localhost' });
  }
  if (sp.type !== 'Localhost' && sp.localhostProfile !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['security', 'seccompProfile', 'localhostProfile'], message: `must not be set when spec.security.seccompProfile.type is ${sp.type}` });
  }
  const iso = spec.isolation;
  if (new Set(iso.namespaces).size !== iso.namespaces.length) {
    ctx.addIssue({ code: 'custom', path: ['isolation', 'namespaces'], message: 'must not list a namespace twice' });
  }
  if (!iso.namespaces.includes('mount')) {
    ctx.addIssue({ code: 'custom', path: ['isolation', 'namespaces'], message: "must include 'mount' (the env always gets its own root filesystem)" });
  }
  if (iso.userNamespace.enabled && !iso.namespaces.includes('user')) {
    ctx.addIssue({ code: 'custom', path: ['isolation', 'userNamespace', 'enabled'], message: "requires 'user' in spec.isolation.namespaces" });
  }
  const cpu = spec.resources.cpu?.max;
  if (cpu !== undefined && isValidQuantity(cpu) && toMillicores(cpu) < 10n) {
    ctx.addIssue({ code: 'custom', path: ['resources', 'cpu', 'max'], message: 'must be at least 10m (the kernel needs a 1ms quota per 100ms period)' });
  }
  if (mem?.max !== undefined && isValidQuantity(mem.max) && toBytes(mem.max) < 4n * 1024n * 1024n) {
    ctx.addIssue({ code: 'custom', path: ['resources', 'memory', 'max'], message: `must be at least 4Mi (got ${formatBytes(toBytes(mem.max))} bytes)` });
  }
  const devices = (spec.resources.io?.max ?? []).map((d) => d.device);
  if (new Set(devices).size !== devices.length) {
    ctx.addIssue({ code: 'custom', path: ['resources', 'io', 'max'], message: 'must not list a device twice' });
  }
}

function isValidQuantity(q: string | number): boolean {
  // Refinements run even when a field already failed, so guard every conversion.
  if (typeof q === 'number') return Number.isSafeInteger(q) && q >= 0;
  return typeof q === 'string' && isQuantity(q) && !q.startsWith('-');
}

function safeCompare(a: string | number, b: string | number): number {
  return isValidQuantity(a) && isValidQuantity(b) ? compareQuantities(a, b) : 0;
}

const TIME = z.string().describe('RFC 3339 time.');

export const ConditionSchema = z
  .object({
    type: z.string().max(316).describe(`Condition type: ${CONDITION_TYPES.join(', ')}.`),
    status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
    observedGeneration: z.int().min(0).describe('metadata.generation this condition was computed from.').optional(),
    lastTransitionTime: TIME.describe('When the status last changed.'),
    reason: z.string().max(1024).describe('CamelCase machine-readable reason.'),
    message: z.string().max(32768).describe('Human-readable detail.'),
  })
  .meta({ description: 'A condition shaped like metav1.Condition.' });

export const UsageSchema = z
  .object({
    memoryCurrentBytes: z.int().min(0).describe('Memory in use.').optional(),
    memoryPeakBytes: z.int().min(0).describe('Peak memory.').optional(),
    pids: z.int().min(0).describe('Tasks in the env.').optional(),
    cpuSeconds: z.number().min(0).describe('CPU time used.').optional(),
    ioReadBytes: z.int().min(0).describe('Bytes read from block devices.').optional(),
    ioWriteBytes: z.int().min(0).describe('Bytes written to block devices.').optional(),
    oomKills: z.int().min(0).describe('Processes killed by the OOM killer.').optional(),
  })
  .meta({ description: 'Resource usage seen by the kernel.' });

export const EnvStatusSchema = z
  .object({
    phase: z.enum(PHASES).describe('Lifecycle phase.').optional(),
    reason: z.enum(REASONS).describe('Why the env is in this phase.').optional(),
    message: z.string().max(32768).describe('Human-readable detail.').optional(),
    nodeName: z.string().max(253).describe('Node the env is bound to.').optional(),
    cgroupPath: z.string().max(4096).describe('cgroup path of the env on the node.').optional(),
    netns: z.string().max(4096).describe('Named network namespace path on the node.').optional(),
    scheduledTime: TIME.describe('When the env was bound to a node.').optional(),
    startTime: TIME.describe('When the workload started.').optional(),
    finishTime: TIME.describe('When the env finished.').optional(),
    exitCode: z.int().min(0).max(255).describe('Workload exit code; 128+signal when killed by a signal.').optional(),
    usage: UsageSchema.optional(),
    logTail: z.string().max(16384).describe('Last lines of the workload output.').optional(),
    conditions: z
      .array(ConditionSchema)
      .max(16)
      .describe('Scheduled, Ready (from the first status write; True while Running and once Succeeded), Finished (True once Succeeded or Failed), Stalled (True on a terminal failure), Reclaimed, Leaked.')
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .optional(),
    observedGeneration: z.int().min(0).describe('metadata.generation the controller last acted on.').optional(),
  })
  .meta({ description: 'Observed state, written by the controller (scheduling, backstops) and the node agent (host state).' });

/** A whole DisposableEnv object, as the CLI reads it from a manifest. */
export const DisposableEnvSchema = z.object({
  apiVersion: z.literal('disposable.dev/v1alpha1'),
  kind: z.literal('DisposableEnv'),
  metadata: z.looseObject({ name: dnsLabel().optional(), namespace: z.string().optional() }),
  spec: EnvSpecSchema,
  status: EnvStatusSchema.optional(),
});

export type EnvSpec = z.infer<typeof EnvSpecSchema>;
export type EnvSpecInput = z.input<typeof EnvSpecSchema>;
export type EnvStatus = z.infer<typeof EnvStatusSchema>;
export type Resources = EnvSpec['resources'];
export type Condition = z.infer<typeof ConditionSchema>;
export type Usage = z.infer<typeof UsageSchema>;
export type DisposableEnv = z.infer<typeof DisposableEnvSchema>;
