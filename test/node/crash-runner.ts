// The process the crash test SIGKILLs: a runtime that creates one env, supervises
// it and tears it down, exactly as `denv run` does in-process. It loads and
// warms up everything first, prints `ready`, then waits for one JSON line on
// stdin ({stateDir, id, name, spec}) so the kill delay measures runtime work,
// not node's start-up.
import { createInterface } from 'node:readline';
import type { EnvSpec } from '../../src/api/env.js';
import { Runtime } from '../../node-agent/runtime.js';
import { supervise } from '../../node-agent/supervisor.js';

interface Job {
  stateDir: string;
  id: string;
  name: string;
  spec: EnvSpec;
}

async function main(): Promise<void> {
  const warm = await Runtime.open({ stateDir: '/tmp' });
  await warm.tools();
  process.stdout.write('ready\n');
  const rl = createInterface({ input: process.stdin });
  const line = await new Promise<string>((res) => rl.once('line', res));
  rl.close();
  const job = JSON.parse(line) as Job;
  const rt = await Runtime.open({ stateDir: job.stateDir });
  const onPhase = (r: { phase: string }): void => void process.stdout.write(`phase ${r.phase}\n`);
  await rt.create({ id: job.id, name: job.name, spec: job.spec }, onPhase);
  const final = await supervise(rt, job.id, { intervalMs: 50, registerPid: true, onPhase });
  process.stdout.write(`${JSON.stringify({ phase: final.phase, reason: final.reason, exitCode: final.exitCode })}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`crash-runner: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
