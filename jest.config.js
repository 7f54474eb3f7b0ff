// Jest projects: `unit` is pure logic (fast, no privileges); `node` needs root,
// real namespaces and cgroups; `cluster` needs a real kube-apiserver (started once
// per run by the global setup, or TEST_KUBECONFIG); `vm` boots a cgroup v2 kernel.
const transform = {
  '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
};
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform,
  testEnvironment: 'node',
};

/** @type {import('jest').Config} */
export default {
  // testTimeout and maxWorkers are global options (jest ignores them per project).
  // Real kernels, runtimes and API servers are slow on a 2-core machine; tests
  // that need less set their own. One worker: the host-level suites (node, vm)
  // must not compete for the two cores while they measure throttling and timing.
  testTimeout: 120000,
  maxWorkers: 1,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'cluster',
      testMatch: ['<rootDir>/test/cluster/**/*.test.ts'],
      globalSetup: '<rootDir>/test/helpers/cluster-setup.ts',
      globalTeardown: '<rootDir>/test/helpers/cluster-teardown.ts',
    },
    { ...common, displayName: 'node', testMatch: ['<rootDir>/test/node/**/*.test.ts'] },
    { ...common, displayName: 'vm', testMatch: ['<rootDir>/test/vm/**/*.test.ts'] },
  ],
};
