/**
 * The DisposableNode API: one cluster-scoped object per node, written by that
 * node's agent, read by the controller to schedule (what the node can enforce,
 * how much room it has) and by people to see GC results.
 */
import { z } from 'zod';
import { ConditionSchema } from './env.js';

export const CGROUP_MODES = ['v2', 'hybrid', 'v1'] as const;
export type CgroupMode = (typeof CGROUP_MODES)[number];

export const GC_KINDS = ['cgroup', 'netns', 'mount', 'container', 'bundle', 'conmon', 'process', 'zombie', 'idRange'] as const;
export type GcKind = (typeof GC_KINDS)[number];

const countsByKind = z
  .object(Object.fromEntries(GC_KINDS.map((k) => [k, z.int().min(0).describe(`${k} count.`).optional()])) as Record<GcKind, z.ZodOptional<z.ZodInt>>)
  .meta({ description: 'Counts by resource kind.' });

export const NodeSpecSchema = z
  .strictObject({
    unschedulable: z.boolean().default(false).describe('When true the controller binds no new envs to this node.'),
    maxEnvs: z.int().min(0).max(10000).describe('Overrides the agent-reported maximum number of envs.').optional(),
  })
  .meta({ description: 'Operator overrides for a node.' });

export const NodeStatusSchema = z
  .object({
    cgroupMode: z.enum(CGROUP_MODES).describe('cgroup mode detected on the host: v2 (unified), hybrid or v1 (legacy).').optional(),
    cgroupRoot: z.string().max(4096).describe('Root of the project cgroup tree on this node.').optional(),
    controllers: z.array(z.string().max(64)).max(32).describe('Resource controllers the agent can use: cpu, memory, io, pids, …').optional(),
    features: z.array(z.string().max(64)).max(32).describe('Enforceable features, e.g. memory.high, io.max, cgroup.kill, userns.').optional(),
    kernel: z.string().max(256).describe('Kernel release.').optional(),
    runtime: z
      .object({
        name: z.string().max(64).describe('OCI runtime: runc or crun.'),
        version: z.string().max(256).describe('Runtime version.'),
        monitor: z.string().max(256).describe('conmon version.').optional(),
        init: z.string().max(256).describe('Init used as PID 1: tini or catatonit.').optional(),
      })
      .meta({ description: 'Runtime the agent launches envs with.' })
      .optional(),
    capacity: z
      .object({
        maxEnvs: z.int().min(0).describe('Envs this node accepts at once.').optional(),
        memoryBytes: z.int().min(0).describe('Memory available to envs.').optional(),
        cpuMillis: z.int().min(0).describe('CPU available to envs, in millicores.').optional(),
      })
      .meta({ description: 'What the node offers.' })
      .optional(),
    allocated: z
      .object({
        envs: z.int().min(0).describe('Envs present on the node.').optional(),
        memoryBytes: z.int().min(0).describe('Sum of memory.max of present envs.').optional(),
      })
      .meta({ description: 'What present envs hold.' })
      .optional(),
    lastGC: z
      .object({
        time: z.string().describe('When the pass finished (RFC 3339).'),
        durationSeconds: z.number().min(0).describe('How long it took.').optional(),
        found: countsByKind.optional(),
        reclaimed: countsByKind.optional(),
        foreignLeaks: countsByKind.optional(),
        stuck: z.int().min(0).describe('Resources that could not be reclaimed (e.g. processes in D state).').optional(),
      })
      .meta({ description: 'Result of the last garbage-collection pass.' })
      .optional(),
    agentVersion: z.string().max(64).describe('Agent version.').optional(),
    conditions: z
      .array(ConditionSchema)
      .max(16)
      .describe('Ready and other node conditions.')
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .optional(),
  })
  .meta({ description: 'What the agent observed on the node.' });

export type NodeSpec = z.infer<typeof NodeSpecSchema>;
export type NodeStatus = z.infer<typeof NodeStatusSchema>;
