/**
 * The kstatus tool (hack/kstatus, through test/helpers/kstatus.ts) really runs
 * cli-utils' kstatus: synthetic DisposableEnvs get the verdicts kstatus'
 * documented rules give, in its order of precedence — deletionTimestamp, then
 * metadata.generation vs status.observedGeneration, then the Reconciling and
 * Stalled conditions, then Ready for types it has no rules for, else Current.
 * Flux and kpt read the operator's status through these rules.
 */
import { kstatus } from '../helpers/kstatus.js';

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** A DisposableEnv at generation 1 whose status has observed generation 1, with `conditions`. */
function denv(name: string, conditions: Condition[] | undefined, patch: { metadata?: object; status?: object } = {}): object {
  return {
    apiVersion: 'disposable.dev/v1alpha1',
    kind: 'DisposableEnv',
    metadata: { name, namespace: 'default', generation: 1, ...patch.metadata },
    spec: { class: 'ci-jobs', workload: { command: ['/bin/true'] } },
    status: { observedGeneration: 1, ...(conditions ? { conditions } : {}), ...patch.status },
  };
}

const cond = (type: string, status: Condition['status'], reason: string, message: string): Condition => ({
  type,
  status,
  reason,
  message,
});
const ready = cond('Ready', 'True', 'Running', 'workload is running');

describe('kstatus tool (cli-utils kstatus on DisposableEnv)', () => {
  it('gives each documented rule its verdict, one line per object in input order', async () => {
    const cases: { obj: object; status: string; message: string }[] = [
      {
        obj: denv('ready-false', [cond('Ready', 'False', 'Pending', 'waiting for a node')]),
        status: 'InProgress',
        message: 'waiting for a node',
      },
      {
        obj: denv('ready-unknown', [cond('Ready', 'Unknown', 'Starting', 'starting the workload')]),
        status: 'InProgress',
        message: 'starting the workload',
      },
      { obj: denv('ready-true', [ready]), status: 'Current', message: 'Resource is Ready' },
      {
        // Stalled=True wins over Ready: kstatus checks its own conditions first.
        obj: denv('stalled', [cond('Ready', 'False', 'Failed', 'no'), cond('Stalled', 'True', 'ImagePullFailed', 'cannot start')]),
        status: 'Failed',
        message: 'cannot start',
      },
      {
        obj: denv('reconciling', [ready, cond('Reconciling', 'True', 'Binding', 'binding to a node')]),
        status: 'InProgress',
        message: 'binding to a node',
      },
      {
        // The controller has not seen the latest spec yet: Ready=True is not believed.
        obj: denv('stale', [ready], { metadata: { generation: 2 } }),
        status: 'InProgress',
        message: 'DisposableEnv generation is 2, but latest observed generation is 1',
      },
      {
        // cli-utils v0.37.2 reports deletion as its own status, Terminating (generic.go,
        // checkGenericProperties), before looking at generation or conditions.
        obj: denv('deleting', [ready], { metadata: { deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: ['disposable.dev/teardown'] } }),
        status: 'Terminating',
        message: 'Resource scheduled for deletion',
      },
      { obj: denv('no-conditions', undefined), status: 'Current', message: 'Resource is current' },
    ];

    const results = await kstatus(cases.map((c) => c.obj));

    expect(results).toEqual(
      cases.map((c) => ({ name: (c.obj as { metadata: { name: string } }).metadata.name, status: c.status, message: c.message })),
    );
  });

  it('reports Unknown with kstatus’ error when a field it reads has the wrong type', async () => {
    const [r] = await kstatus([denv('bad-generation', [ready], { status: { observedGeneration: 'one' } })]);
    expect(r).toMatchObject({ name: 'bad-generation', status: 'Unknown' });
    expect(r!.message).toContain('status.observedGeneration');
  });

  it('fails loudly on input that is not a Kubernetes object', async () => {
    await expect(kstatus([{ kind: 'DisposableEnv', metadata: { name: 'x' } }])).rejects.toThrow(/item 0: missing apiVersion/);
  });
});
