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
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'cluster',
      testMatch: ['<rootDir>/test/cluster/**/*.test.ts'],
      globalSetup: '<rootDir>/test/helpers/cluster-setup.ts',
      globalTeardown: '<rootDir>/test/helpers/cluster-teardown.ts',
      testTimeout: 60000,
    },
    { ...common, displayName: 'node', testMatch: ['<rootDir>/test/node/**/*.test.ts'], testTimeout: 120000, maxWorkers: 1 },
    { ...common, displayName: 'vm', testMatch: ['<rootDir>/test/vm/**/*.test.ts'] },
  ],
};
