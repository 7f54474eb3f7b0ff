import { agentHelpText, ConfigError, parseAgentConfig, type AgentConfig } from '../../node-agent/agent/config.js';

function problems(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseAgentConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}): AgentConfig => parseAgentConfig(argv, env) as AgentConfig;

describe('denv agent configuration', () => {
  it('has safe defaults: no host paths allowed, 110 envs, 512Mi kept for the node, GC every 30 s', () => {
    const c = parse(['--node=n1']);
    expect(c).toMatchObject({
      node: 'n1',
      stateDir: '/var/lib/disposable-env',
      cgroupRoot: 'disposable.slice',
      nodeLeaseNamespace: 'disposable-env-system',
      leaseRenewInterval: 5000,
      maxEnvs: 110,
      reservedMemory: 512 * 1024 * 1024,
      allowedHostPaths: [],
      gcInterval: 30_000,
      usageInterval: 15_000,
      events: true,
      nodeLabels: {},
    });
  });

  it('requires the node name, from --node or NODE_NAME (a Pod sets it from spec.nodeName)', () => {
    expect(problems([])[0]).toMatch(/^--node: required/);
    expect(parse([], { NODE_NAME: 'worker-1' }).node).toBe('worker-1');
    expect(parse(['--node', 'a'], { NODE_NAME: 'b' }).node).toBe('a');
  });

  it('names every bad flag and where a value came from, before anything starts', () => {
    const p = problems(['--node=N_1', '--max-envs=lots', '--reserved-memory=1 GB', '--gc-interval=0s', '--allowed-host-paths=/srv,relative', '--bogus=1'], { DENV_SAMPLE_INTERVAL: '5ms' });
    expect(p).toEqual(
      expect.arrayContaining([
        '--bogus: unknown flag (see --help)',
        expect.stringMatching(/^--node: expected a node name/),
        expect.stringMatching(/^--max-envs: expected a whole number/),
        expect.stringMatching(/^--reserved-memory: expected a quantity like 512Mi/),
        expect.stringMatching(/^--gc-interval: must be longer than 0/),
        expect.stringMatching(/^--allowed-host-paths: "relative" is not a normalised absolute path/),
        expect.stringMatching(/^--sample-interval \(from DENV_SAMPLE_INTERVAL\): expected between 20ms and 1m/),
      ]),
    );
  });

  it('parses host paths, labels and booleans', () => {
    const c = parse(['--node=n', '--allowed-host-paths=/srv/ci/, /opt/images', '--node-labels=pool=ci,disposable.dev/tier=fast', '--no-events']);
    expect(c.allowedHostPaths).toEqual(['/srv/ci', '/opt/images']);
    expect(c.nodeLabels).toEqual({ pool: 'ci', 'disposable.dev/tier': 'fast' });
    expect(c.events).toBe(false);
    expect(problems(['--node=n', '--node-labels=pool'])[0]).toMatch(/^--node-labels: "pool" is not a label key=value/);
    expect(problems(['--node=n', '--allowed-host-paths=/srv/../etc'])[0]).toMatch(/not a normalised absolute path/);
  });

  it('--help lists every flag with its environment variable', () => {
    expect(parseAgentConfig(['--help'], {})).toBe('help');
    const h = agentHelpText();
    for (const f of ['--node', '--allowed-host-paths', '--max-envs', '--reserved-memory', '--gc-interval', '--usage-interval', '--http-addr']) expect(h).toContain(f);
    expect(h).toContain('[DENV_NODE, NODE_NAME]');
  });
});

describe('denv agent limits flags', () => {
  it('defaults to the template limits and no caps', () => {
    const c = parse(['--node=n1']);
    expect(c.defaultLimits).toEqual({ memory: '1Gi', 'memory.high': '800Mi', swap: '500Mi', cpu: '500m', pids: '100', 'io.weight': '100' });
    expect(c.maxLimits).toEqual({});
    expect(parse(['--node=n1', '--default-limits=', '--max-limits=memory=4Gi']).defaultLimits).toEqual({});
    expect(parse(['--node=n1', '--max-limits=memory=4Gi,pids=1000']).maxLimits).toEqual({ memory: '4Gi', pids: '1000' });
  });

  it('names the flag of a bad list, and of a default above its cap', () => {
    expect(problems(['--node=n1', '--default-limits=mem=1Gi'])).toEqual([expect.stringMatching(/^--default-limits: "mem=1Gi": unknown limit "mem"/)]);
    expect(problems(['--node=n1', '--max-limits=pids=x'])).toEqual([expect.stringMatching(/^--max-limits: "pids=x": pids must be an integer/)]);
    expect(problems(['--node=n1', '--max-limits=pids=50'])).toEqual(['--max-limits: default pids=100 is above its cap 50 (--default-limits)']);
  });
});
