/**
 * Controller configuration: flags, then `DENV_*` environment variables, then
 * defaults, validated by one zod schema so every bad value is reported with the
 * flag's name and what was expected (`--lease-duration: expected a duration like
 * 15s`) before anything connects to the cluster.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { bool, ConfigError, duration, envVarOf, flagsHelp, hostPort, int, namespace, parseFlags, positiveDuration, type FlagSpec } from '../core/flags.js';

export { ConfigError, envVarOf };

/** The placement strategies the scheduler knows. */
export const STRATEGIES = ['spread', 'binpack'] as const;
export type Strategy = (typeof STRATEGIES)[number];

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Every flag the controller takes, in `--help` order. */
export const FLAGS: readonly (FlagSpec & { key: keyof RawConfig })[] = [
  { key: 'kubeconfig', flag: 'kubeconfig', envAlias: 'KUBECONFIG', help: 'kubeconfig file; default: $KUBECONFIG, then in-cluster service account' },
  { key: 'context', flag: 'context', help: 'kubeconfig context to use' },
  { key: 'watchNamespace', flag: 'watch-namespace', def: '', help: 'only manage DisposableEnvs in this namespace (default: all)' },
  { key: 'disposableNodeSelector', flag: 'disposable-node-selector', def: '', help: 'label selector: schedule only to DisposableNodes matching it (e.g. pool=ci), to shard node pools between controllers' },
  { key: 'nodeLeaseNamespace', flag: 'node-lease-namespace', def: 'disposable-env-system', help: 'namespace of the agents\' node Leases (one Lease per node, named after it)' },
  { key: 'nodeLeaseTimeout', flag: 'node-lease-timeout', def: '40s', help: 'a node whose Lease was not renewed for this long is lost' },
  { key: 'nodeLostFinalizerGrace', flag: 'node-lost-finalizer-grace', def: '5m', help: 'after a node is lost, wait this long before releasing finalizers of its deleted envs' },
  { key: 'reclaimedFinalizerGrace', flag: 'reclaimed-finalizer-grace', def: '10s', help: 'a deleted env whose agent reported Reclaimed=True but did not remove the finalizer itself loses it after this long' },
  { key: 'deadlineSlack', flag: 'deadline-slack', def: '30s', help: 'extra time after timeoutSeconds+gracePeriodSeconds before the controller fails an env itself' },
  { key: 'schedulingStrategy', flag: 'scheduling-strategy', def: 'spread', help: 'spread (least allocated node) or binpack (most allocated node that fits)' },
  { key: 'leaderElect', flag: 'leader-elect', def: 'true', boolean: true, help: 'elect a leader through a Lease so only one replica acts' },
  { key: 'leaderElectionNamespace', flag: 'leader-election-namespace', def: 'disposable-env-system', help: 'namespace of the leader-election Lease' },
  { key: 'leaderElectionId', flag: 'leader-election-id', def: 'disposable-env-controller', help: 'name of the leader-election Lease' },
  { key: 'leaseDuration', flag: 'lease-duration', def: '15s', help: 'how long a leader\'s Lease is valid without renewal; failover takes at most this long' },
  { key: 'renewDeadline', flag: 'renew-deadline', def: '10s', help: 'a leader that cannot renew for this long steps down (and exits)' },
  { key: 'retryPeriod', flag: 'retry-period', def: '2s', help: 'how often candidates try to acquire and the leader renews' },
  { key: 'identity', flag: 'identity', help: 'holder identity in the leader Lease (default: hostname_random)' },
  { key: 'resyncPeriod', flag: 'resync-period', def: '10m', help: 're-enqueue every DisposableEnv this often (0 disables)' },
  { key: 'workers', flag: 'workers', def: '64', help: 'reconciles running at once (one per key at a time)' },
  { key: 'httpAddr', flag: 'http-addr', def: ':8080', help: 'address of /healthz, /readyz and /metrics' },
  { key: 'logLevel', flag: 'log-level', def: 'info', help: 'error, warn, info or debug' },
  { key: 'shutdownTimeout', flag: 'shutdown-timeout', def: '30s', help: 'on SIGTERM, how long in-flight reconciles may take to finish' },
  { key: 'apiMaxInFlight', flag: 'kube-api-max-inflight', def: '64', help: 'concurrent requests to the API server (connections in the keep-alive pool)' },
  { key: 'eventQueueSize', flag: 'event-queue-size', def: '5000', help: 'Events waiting to be written; beyond it new Events are dropped (and counted)' },
];

/** Every field as a string (or absent): what flags and the environment give. */
type RawConfig = {
  kubeconfig?: string;
  context?: string;
  watchNamespace?: string;
  disposableNodeSelector?: string;
  nodeLeaseNamespace?: string;
  nodeLeaseTimeout?: string;
  nodeLostFinalizerGrace?: string;
  reclaimedFinalizerGrace?: string;
  deadlineSlack?: string;
  schedulingStrategy?: string;
  leaderElect?: string;
  leaderElectionNamespace?: string;
  leaderElectionId?: string;
  leaseDuration?: string;
  renewDeadline?: string;
  retryPeriod?: string;
  identity?: string;
  resyncPeriod?: string;
  workers?: string;
  httpAddr?: string;
  logLevel?: string;
  shutdownTimeout?: string;
  apiMaxInFlight?: string;
  eventQueueSize?: string;
};

const ConfigSchema = z
  .strictObject({
    kubeconfig: z.string().min(1, 'must not be empty').optional(),
    context: z.string().min(1, 'must not be empty').optional(),
    watchNamespace: z.union([z.literal(''), namespace()]),
    disposableNodeSelector: z.string().max(1024).regex(/^[A-Za-z0-9_./=!,\s()-]*$/, 'expected a label selector like pool=ci,tier!=slow'),
    nodeLeaseNamespace: namespace(),
    nodeLeaseTimeout: positiveDuration('40s'),
    nodeLostFinalizerGrace: duration('5m'),
    reclaimedFinalizerGrace: duration('10s'),
    deadlineSlack: duration('30s'),
    schedulingStrategy: z.enum(STRATEGIES, { error: `expected one of ${STRATEGIES.join(', ')}` }),
    leaderElect: bool(),
    leaderElectionNamespace: namespace(),
    leaderElectionId: z.string().max(253).regex(DNS_SUBDOMAIN, 'expected a Lease name (a DNS subdomain)'),
    leaseDuration: positiveDuration('15s'),
    renewDeadline: positiveDuration('10s'),
    retryPeriod: positiveDuration('2s'),
    identity: z.string().min(1).max(256).optional(),
    resyncPeriod: duration('10m'),
    workers: int(1, 256),
    httpAddr: hostPort(),
    logLevel: z.enum(['error', 'warn', 'info', 'debug'], { error: 'expected error, warn, info or debug' }),
    shutdownTimeout: duration('30s'),
    apiMaxInFlight: int(1, 1024),
    eventQueueSize: int(0, 100_000),
  })
  .superRefine((c, ctx) => {
    if (c.renewDeadline >= c.leaseDuration) {
      ctx.addIssue({ code: 'custom', path: ['renewDeadline'], message: 'must be shorter than --lease-duration' });
    }
    if (c.retryPeriod >= c.renewDeadline) {
      ctx.addIssue({ code: 'custom', path: ['retryPeriod'], message: 'must be shorter than --renew-deadline' });
    }
  });

/** The validated configuration; durations are milliseconds. */
export type ControllerConfig = Omit<z.infer<typeof ConfigSchema>, 'identity'> & { identity: string };

/** Help text listing every flag, its environment variable and default. */
export function helpText(): string {
  return flagsHelp('usage: denv controller [flags]', FLAGS);
}

/** Parse flags and environment into a validated configuration; throws ConfigError naming each bad flag. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ControllerConfig | 'help' {
  const c = parseFlags(FLAGS, ConfigSchema, argv, env);
  if (c === 'help') return c;
  return { ...c, identity: c.identity ?? `${os.hostname()}_${randomBytes(4).toString('hex')}` };
}
