/**
 * Node agent configuration (`denv agent`): flags, then `DENV_*` environment
 * variables, then defaults, validated by one zod schema like the controller's,
 * so a DaemonSet with a bad value fails at start with the flag named, before
 * anything touches the API server or the host.
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { bool, ConfigError, duration, flagsHelp, hostPort, int, namespace, parseFlags, positiveDuration, type FlagSpec } from '../../src/core/flags.js';
import { isQuantity, toBytes } from '../../src/core/quantity.js';
import { defaultsAboveCaps, DEFAULT_LIMITS_FLAG, parseLimits, type Limits } from '../limits.js';
import { DEFAULT_CGROUP_ROOT, DEFAULT_STATE_DIR } from '../names.js';
import { DEFAULT_SECCOMP_PROFILE_DIR } from '../seccomp.js';

export { ConfigError };

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CGROUP_ROOT = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

/** Every flag the agent takes, in `--help` order. */
export const AGENT_FLAGS: readonly FlagSpec[] = [
  { key: 'node', flag: 'node', envAlias: 'NODE_NAME', help: 'name of this node (its Node, DisposableNode and Lease); required' },
  { key: 'nodeLabels', flag: 'node-labels', def: '', help: 'comma-separated key=value labels of the DisposableNode (what a controller\'s --disposable-node-selector matches), e.g. pool=ci' },
  { key: 'kubeconfig', flag: 'kubeconfig', envAlias: 'KUBECONFIG', help: 'kubeconfig file; default: $KUBECONFIG, then in-cluster service account' },
  { key: 'context', flag: 'context', help: 'kubeconfig context to use' },
  { key: 'stateDir', flag: 'state-dir', def: DEFAULT_STATE_DIR, help: 'journal, bundles and logs of the envs on this node' },
  { key: 'cgroupRoot', flag: 'cgroup-root', def: DEFAULT_CGROUP_ROOT, help: 'cgroup root of the env tree (<root>/<class>/denv-<id>)' },
  { key: 'runtimePath', flag: 'runtime-path', help: 'colon-separated dirs to find runc, conmon and tini-static/catatonit (default $PATH)' },
  { key: 'seccompProfileDir', flag: 'seccomp-profile-dir', def: DEFAULT_SECCOMP_PROFILE_DIR, help: 'absolute dir where an env\'s seccompProfile.localhostProfile is resolved; a profile outside it is refused' },
  { key: 'nodeLeaseNamespace', flag: 'node-lease-namespace', def: 'disposable-env-system', help: 'namespace of the node Lease (must match the controller\'s)' },
  { key: 'leaseRenewInterval', flag: 'lease-renew-interval', def: '5s', help: 'how often the node Lease is renewed (the controller declares a node lost after --node-lease-timeout, 40s by default)' },
  { key: 'maxEnvs', flag: 'max-envs', def: '110', help: 'envs this node runs at once; more are refused with a status message' },
  { key: 'reservedMemory', flag: 'reserved-memory', def: '512Mi', help: 'memory kept for the node itself; the rest is offered to envs (the sum of their memory.max)' },
  { key: 'defaultLimits', flag: 'default-limits', def: DEFAULT_LIMITS_FLAG, help: 'limits an env gets for each resource it leaves unset (memory, memory.high, swap, cpu, pids, io.weight); one this host cannot enforce is skipped; empty: none' },
  { key: 'maxLimits', flag: 'max-limits', def: '', help: 'caps, same syntax: an env asking more (e.g. memory=4Gi) is refused with PolicyDenied naming the field; empty: no caps' },
  { key: 'allowedHostPaths', flag: 'allowed-host-paths', def: '', help: 'comma-separated absolute dirs an env may use as rootfs.hostPath (itself or below); empty: none' },
  { key: 'gcInterval', flag: 'gc-interval', def: '30s', help: 'time between GC passes (one also runs at start)' },
  { key: 'gcMinAge', flag: 'gc-min-age', def: '60s', help: 'an orphan younger than this is left for the next pass (it may be half-made by a create in flight)' },
  { key: 'sampleInterval', flag: 'sample-interval', def: '1s', help: 'how often each env\'s cgroup is sampled to enforce its lifecycle' },
  { key: 'usageInterval', flag: 'usage-interval', def: '15s', help: 'how often status.usage is written while an env runs (sooner on a large change)' },
  { key: 'httpAddr', flag: 'http-addr', def: ':8081', help: 'address of /healthz, /readyz and /metrics' },
  { key: 'logLevel', flag: 'log-level', def: 'info', help: 'error, warn, info or debug' },
  { key: 'identity', flag: 'identity', help: 'holder identity in the node Lease (default: hostname_pid; use the Pod name)' },
  { key: 'apiMaxInFlight', flag: 'kube-api-max-inflight', def: '16', help: 'concurrent requests to the API server' },
  { key: 'events', flag: 'events', def: 'true', boolean: true, help: 'record Kubernetes Events for what happens on the node' },
];

const absoluteDirs = (): z.ZodType<string[], string> =>
  z.string().transform((s, ctx) => {
    const dirs = s.split(',').map((d) => d.trim()).filter(Boolean);
    const out: string[] = [];
    for (const d of dirs) {
      const bare = d.length > 1 ? d.replace(/\/+$/, '') : d;
      if (!path.isAbsolute(bare) || path.normalize(bare) !== bare || bare.includes('\0')) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(d)} is not a normalised absolute path` });
        return z.NEVER;
      }
      out.push(bare);
    }
    return out;
  });

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

const labels = (): z.ZodType<Record<string, string>, string> =>
  z.string().transform((s, ctx) => {
    const out: Record<string, string> = {};
    for (const pair of s.split(',').map((p) => p.trim()).filter(Boolean)) {
      const i = pair.indexOf('=');
      const k = i < 0 ? pair : pair.slice(0, i);
      const v = i < 0 ? '' : pair.slice(i + 1);
      if (i < 0 || !LABEL_KEY.test(k) || !LABEL_VALUE.test(v)) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(pair)} is not a label key=value` });
        return z.NEVER;
      }
      out[k] = v;
    }
    return out;
  });

const bytes = (example: string): z.ZodType<number, string> =>
  z.string().transform((s, ctx) => {
    if (!isQuantity(s) || s.startsWith('-')) {
      ctx.addIssue({ code: 'custom', message: `expected a quantity like ${example}` });
      return z.NEVER;
    }
    return Number(toBytes(s));
  });

/** `memory=1Gi,pids=100,...` (see node-agent/limits.ts). */
export const limits = (): z.ZodType<Limits, string> =>
  z.string().transform((s, ctx) => {
    try {
      return parseLimits(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

const AgentConfigSchema = z.strictObject({
  node: z.string({ error: 'required: the name of this node (or set NODE_NAME)' }).max(253).regex(DNS_SUBDOMAIN, 'expected a node name (a DNS subdomain)'),
  nodeLabels: labels(),
  kubeconfig: z.string().min(1, 'must not be empty').optional(),
  context: z.string().min(1, 'must not be empty').optional(),
  stateDir: z.string().refine((d) => path.isAbsolute(d) && !d.includes('\0'), 'expected an absolute path'),
  cgroupRoot: z.string().max(256).regex(CGROUP_ROOT, 'expected a relative cgroup path like disposable.slice'),
  runtimePath: z.string().min(1).optional(),
  seccompProfileDir: z.string().refine((d) => path.isAbsolute(d) && !d.includes('\0'), 'expected an absolute path'),
  nodeLeaseNamespace: namespace(),
  leaseRenewInterval: positiveDuration('5s'),
  maxEnvs: int(0, 10_000),
  reservedMemory: bytes('512Mi'),
  defaultLimits: limits(),
  maxLimits: limits(),
  allowedHostPaths: absoluteDirs(),
  gcInterval: positiveDuration('30s'),
  gcMinAge: duration('60s'),
  sampleInterval: positiveDuration('1s').refine((ms) => ms >= 20 && ms <= 60_000, 'expected between 20ms and 1m'),
  usageInterval: positiveDuration('15s'),
  httpAddr: hostPort(),
  logLevel: z.enum(['error', 'warn', 'info', 'debug'], { error: 'expected error, warn, info or debug' }),
  identity: z.string().min(1).max(256).optional(),
  apiMaxInFlight: int(1, 1024),
  events: bool(),
}).superRefine((c, ctx) => {
  for (const message of defaultsAboveCaps(c.defaultLimits, c.maxLimits)) ctx.addIssue({ code: 'custom', path: ['maxLimits'], message: `${message} (--default-limits)` });
});

/** The validated agent configuration; durations are milliseconds, memory in bytes. */
export type AgentConfig = Omit<z.infer<typeof AgentConfigSchema>, 'identity'> & { identity: string };

/** Help text listing every flag, its environment variable and default. */
export function agentHelpText(): string {
  return flagsHelp('usage: denv agent --node NAME [flags]', AGENT_FLAGS);
}

/** Parse flags and environment into a validated configuration; throws ConfigError naming each bad flag. */
export function parseAgentConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): AgentConfig | 'help' {
  const c = parseFlags(AGENT_FLAGS, AgentConfigSchema, argv, env);
  if (c === 'help') return c;
  return { ...c, identity: c.identity ?? `${os.hostname()}_${process.pid}` };
}
