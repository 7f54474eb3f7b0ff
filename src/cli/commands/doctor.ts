/** `denv doctor`: what this host is and what it can and cannot enforce, before anyone runs an env on it. */
import { parseArgs } from 'node:util';
import { probeHost, type HostProbe } from '../../../node-agent/probe.js';
import { parseOrUsage } from '../../../node-agent/cli.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';

function print(p: HostProbe): void {
  const lines = [
    `kernel:          ${p.kernel}`,
    `cgroup mode:     ${p.cgroup.mode}${p.cgroup.v2Root ? ` (cgroup2 at ${p.cgroup.v2Root})` : ''}`,
    `controllers:     ${p.cgroup.controllers.join(' ') || '(none)'}`,
  ];
  if (p.cgroup.v1.length) lines.push(`v1 hierarchies:  ${p.cgroup.v1.map((h) => `${h.mountPoint}[${h.name ? `name=${h.name}` : h.controllers.join(',')}]`).join(' ')}`);
  if (p.cgroup.v2Root) {
    const f = p.cgroup.v2Features;
    lines.push(`cgroup2 features: cgroup.kill=${f.kill ? 'yes' : 'no'} cgroup.freeze=${f.freeze ? 'yes' : 'no'} cgroup.events=${f.events ? 'yes' : 'no'}`);
  }
  lines.push(`user namespaces: ${p.userNamespaces.supported ? `yes (max ${p.userNamespaces.max})` : 'no'}`);
  lines.push('tools:');
  for (const [name, t] of Object.entries(p.tools)) lines.push(`  ${name.padEnd(12)} ${t.path ? `${t.path}  ${t.version ?? ''}` : 'not found'}`);
  lines.push(`spawn helper:    ${p.spawnHelper.path ?? 'not built (npm run build needs gcc); programs are started by forking the agent'}`);
  lines.push('can enforce:');
  for (const c of p.canEnforce) lines.push(`  + ${c}`);
  lines.push('cannot enforce:');
  for (const c of p.cannotEnforce) lines.push(`  - ${c.what}: ${c.why}`);
  if (!p.cannotEnforce.length) lines.push('  (nothing)');
  console.log(lines.join('\n'));
}

/** True when this host has what `denv run` needs. */
export function canRunEnvs(p: HostProbe): boolean {
  return !!p.tools.runc.path && !!p.tools.conmon.path && !!(p.tools['tini-static'].path ?? p.tools.catatonit.path) && !!p.tools.ip.path;
}

export const command: Command = {
  summary: 'probe this host: cgroup mode, controllers, kernel, user namespaces, runtime tools, what can be enforced',
  async run(argv: string[]): Promise<number> {
    const { values } = parseOrUsage(() => parseArgs({
      args: argv,
      options: { json: { type: 'boolean' }, 'runtime-path': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }), (m) => new UsageError(m));
    if (values.help) {
      console.log('usage: denv doctor [--json] [--runtime-path PATH]\n\nExit 0 when this host can run envs, 1 otherwise.');
      return 0;
    }
    const p = await probeHost(values['runtime-path'] ?? process.env.PATH ?? '');
    if (values.json) console.log(JSON.stringify({ ...p, canRunEnvs: canRunEnvs(p) }, null, 2));
    else print(p);
    return canRunEnvs(p) ? 0 : 1;
  },
};
