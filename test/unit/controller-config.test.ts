import { formatDuration, parseDuration } from '../../src/core/duration.js';
import { ConfigError, envVarOf, helpText, parseConfig, type ControllerConfig } from '../../src/controller/config.js';

function problems(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

function config(argv: string[], env: NodeJS.ProcessEnv = {}): ControllerConfig {
  const c = parseConfig(argv, env);
  if (c === 'help') throw new Error('unexpected help');
  return c;
}

describe('parseDuration (Go time.ParseDuration grammar)', () => {
  it.each([
    ['15s', 15_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['2h', 7_200_000],
    ['1.5s', 1500],
    ['0', 0],
    ['100us', 0.1],
  ])('%s = %d ms', (s, ms) => expect(parseDuration(s)).toBeCloseTo(ms));

  it.each(['abc', '', '15', 's', '1x', '-1s', '1s junk'])('rejects %j', (s) => expect(parseDuration(s)).toBeUndefined());

  it('formats back into something it parses', () => {
    for (const ms of [250, 15_000, 90_000, 3_723_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe('parseConfig', () => {
  it('has defaults a cluster operator expects', () => {
    const c = config([]);
    expect(c.leaseDuration).toBe(15_000);
    expect(c.renewDeadline).toBe(10_000);
    expect(c.retryPeriod).toBe(2_000);
    expect(c.nodeLeaseTimeout).toBe(40_000);
    expect(c.nodeLeaseNamespace).toBe('disposable-env-system');
    expect(c.schedulingStrategy).toBe('spread');
    expect(c.leaderElect).toBe(true);
    expect(c.httpAddr).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(c.identity).toMatch(/_[0-9a-f]{8}$/);
  });

  it('names the flag and says what was expected for a bad duration', () => {
    expect(problems(['--lease-duration=abc'])).toEqual(['--lease-duration: expected a duration like 15s']);
    expect(problems(['--node-lease-timeout', 'soon'])).toEqual(['--node-lease-timeout: expected a duration like 40s']);
  });

  it('reports every bad flag at once, and unknown flags', () => {
    const p = problems(['--workers=0', '--scheduling-strategy=random', '--nope=1', '--http-addr=localhost']);
    expect(p).toEqual(
      expect.arrayContaining([
        '--nope: unknown flag (see --help)',
        '--workers: expected a whole number between 1 and 256',
        '--scheduling-strategy: expected one of spread, binpack',
        expect.stringMatching(/^--http-addr: expected HOST:PORT/),
      ]),
    );
    expect(p).toHaveLength(4);
  });

  it('reads DENV_* environment variables, flags win, and says where a bad value came from', () => {
    expect(envVarOf('lease-duration')).toBe('DENV_LEASE_DURATION');
    expect(config([], { DENV_SCHEDULING_STRATEGY: 'binpack' }).schedulingStrategy).toBe('binpack');
    expect(config(['--scheduling-strategy=spread'], { DENV_SCHEDULING_STRATEGY: 'binpack' }).schedulingStrategy).toBe('spread');
    expect(problems([], { DENV_RETRY_PERIOD: 'often' })).toEqual(['--retry-period (from DENV_RETRY_PERIOD): expected a duration like 2s']);
    expect(config([], { KUBECONFIG: '/tmp/kc' }).kubeconfig).toBe('/tmp/kc');
  });

  it('keeps the leader-election timings ordered as client-go requires', () => {
    expect(problems(['--lease-duration=5s', '--renew-deadline=5s'])).toEqual(['--renew-deadline: must be shorter than --lease-duration']);
    expect(problems(['--retry-period=10s'])).toEqual(['--retry-period: must be shorter than --renew-deadline']);
  });

  it('accepts --no-leader-elect, bare --leader-elect and port 0', () => {
    expect(config(['--no-leader-elect']).leaderElect).toBe(false);
    expect(config(['--leader-elect']).leaderElect).toBe(true);
    expect(config(['--http-addr=127.0.0.1:0']).httpAddr).toEqual({ host: '127.0.0.1', port: 0 });
  });

  it('answers --help with every flag and its environment variable', () => {
    expect(parseConfig(['--help'], {})).toBe('help');
    expect(helpText()).toContain('--node-lease-timeout (default 40s)');
    expect(helpText()).toContain('[DENV_LEASE_DURATION]');
  });
});
