/**
 * Names shared by the controller, the agent, the CLI and the CRDs. One file, so
 * a rename is one edit and every reason string stays a constant.
 */
export const GROUP = 'disposable.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const ENV_KIND = 'DisposableEnv';
export const ENV_PLURAL = 'disposableenvs';
export const NODE_KIND = 'DisposableNode';
export const NODE_PLURAL = 'disposablenodes';

/** Label the controller sets to bind an env to a node; agents select on it. */
export const NODE_LABEL = `${GROUP}/node`;
/** Finalizer held until the agent confirms every host resource is gone. */
export const FINALIZER = `${GROUP}/cleanup`;

/** The seven Linux namespace kinds an env can be given. */
export const NAMESPACE_KINDS = ['pid', 'net', 'mount', 'uts', 'ipc', 'user', 'cgroup'] as const;
export type NamespaceKind = (typeof NAMESPACE_KINDS)[number];

/** Lifecycle phases, in the order an env normally moves through them. */
export const PHASES = ['Pending', 'Scheduled', 'Creating', 'Running', 'Terminating', 'Succeeded', 'Failed'] as const;
export type Phase = (typeof PHASES)[number];

/** Succeeded and Failed: the workload is over for good. */
export function isTerminalPhase(p: Phase | undefined): boolean {
  return p === 'Succeeded' || p === 'Failed';
}

/** Why an env is where it is. Terminal reasons end an env; the others explain a wait. */
export const REASONS = [
  'Unschedulable',
  'InvalidSpec',
  'Completed',
  'Error',
  'DeadlineExceeded',
  'IdleTimeout',
  'OOMKilled',
  'ResourceExceeded',
  'Stopped',
  'NodeLost',
  'Leaked',
  'CreateFailed',
  /** The node's policy (agent flags) does not allow what the spec asks; nothing was created. */
  'PolicyDenied',
  /** The API shows the env started on this node, but the node has no trace of it (state lost): never re-run. */
  'HostStateLost',
] as const;
export type Reason = (typeof REASONS)[number];

/** Condition types on a DisposableEnv. */
export const CONDITION_TYPES = ['Scheduled', 'Ready', 'Finished', 'Stalled', 'Reclaimed', 'Leaked'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** Linux capabilities an env may add or drop (without the CAP_ prefix). */
export const CAPABILITIES = [
  'AUDIT_CONTROL', 'AUDIT_READ', 'AUDIT_WRITE', 'BLOCK_SUSPEND', 'BPF', 'CHECKPOINT_RESTORE', 'CHOWN',
  'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'IPC_LOCK', 'IPC_OWNER', 'KILL', 'LEASE',
  'LINUX_IMMUTABLE', 'MAC_ADMIN', 'MAC_OVERRIDE', 'MKNOD', 'NET_ADMIN', 'NET_BIND_SERVICE', 'NET_BROADCAST',
  'NET_RAW', 'PERFMON', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_CHROOT',
  'SYS_MODULE', 'SYS_NICE', 'SYS_PACCT', 'SYS_PTRACE', 'SYS_RAWIO', 'SYS_RESOURCE', 'SYS_TIME',
  'SYS_TTY_CONFIG', 'SYSLOG', 'WAKE_ALARM',
] as const;
export type Capability = (typeof CAPABILITIES)[number];

/**
 * The capabilities a workload keeps unless it drops more: the short list OCI
 * runtimes grant by default. Everything else (SYS_ADMIN, NET_ADMIN, SYS_MODULE,
 * SYS_PTRACE, BPF, …) is absent unless `security.capabilities.add` names it.
 */
export const DEFAULT_CAPABILITIES: readonly Capability[] = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP',
  'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
];
