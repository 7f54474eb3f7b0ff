// CLI behind test/vm/run.sh: runs a command in the cgroup v2 VM and relays its
// output and exit code. Usage: run.sh [--mem MiB] [--cpus N] [--timeout S]
// [--cwd DIR] [--console] -- CMD [ARG...]
import { runInVm, VmError } from './harness.js';

function usage(): never {
  process.stderr.write('usage: test/vm/run.sh [--mem MiB] [--cpus N] [--timeout S] [--cwd DIR] [--console] -- CMD [ARG...]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
let memoryMiB: number | undefined;
let cpus: number | undefined;
let timeoutMs: number | undefined;
let cwd: string | undefined = process.cwd();
let showConsole = false;
let i = 0;
for (; i < argv.length; i++) {
  const a = argv[i]!;
  if (a === '--') {
    i++;
    break;
  }
  const next = (): string => argv[++i] ?? usage();
  if (a === '--mem') memoryMiB = Number(next());
  else if (a === '--cpus') cpus = Number(next());
  else if (a === '--timeout') timeoutMs = Number(next()) * 1000;
  else if (a === '--cwd') cwd = next();
  else if (a === '--console') showConsole = true;
  else usage();
}
const cmd = argv.slice(i);
if (cmd.length === 0) usage();
const quoted = cmd.map((s) => `'${s.replace(/'/g, `'\\''`)}'`).join(' ');

try {
  const r = await runInVm(`exec ${quoted}`, { memoryMiB, cpus, timeoutMs, cwd });
  if (showConsole) process.stderr.write(`--- console ---\n${r.console}\n--- end console ---\n`);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  process.stderr.write(`[vm] exit=${r.exitCode} boot=${r.bootMs}ms (guest ${r.guestBootMs}ms) total=${r.durationMs}ms\n`);
  process.exit(r.exitCode);
} catch (err) {
  process.stderr.write(`${err instanceof VmError ? err.message : String(err)}\n`);
  process.exit(125);
}
