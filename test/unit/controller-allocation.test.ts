import { AllocationView } from '../../src/controller/allocation.js';
import { WriteExpectations, compareResourceVersions } from '../../src/controller/expectations.js';

describe('AllocationView', () => {
  it('counts an assumed binding at once, and only once when the informer catches up', () => {
    const v = new AllocationView();
    v.assume('ns/a', 'n1', 100);
    expect(v.usageOf('n1')).toEqual({ envs: 1, memory: 100 });
    // The informer still shows the env unbound (it lags the write): the assumption holds.
    v.observe('ns/a', undefined, false, 0);
    expect(v.usageOf('n1')).toEqual({ envs: 1, memory: 100 });
    v.observe('ns/a', 'n1', true, 100);
    expect(v.usageOf('n1')).toEqual({ envs: 1, memory: 100 });
    expect(v.nodeOf('ns/a')).toBe('n1');
  });

  it('frees room when the env finishes or is deleted', () => {
    const v = new AllocationView();
    v.observe('ns/a', 'n1', true, 100);
    v.observe('ns/b', 'n1', true, 50);
    expect(v.usageOf('n1')).toEqual({ envs: 2, memory: 150 });
    v.observe('ns/a', 'n1', false, 100);
    expect(v.usageOf('n1')).toEqual({ envs: 1, memory: 50 });
    v.remove('ns/b');
    expect(v.usageOf('n1')).toEqual({ envs: 0, memory: 0 });
  });

  it('drops an assumption whose write failed', () => {
    const v = new AllocationView();
    v.assume('ns/a', 'n1', 100);
    v.forget('ns/a');
    expect(v.usageOf('n1')).toEqual({ envs: 0, memory: 0 });
    expect(v.nodeOf('ns/a')).toBeUndefined();
  });

  it('ends an assumption when the informer shows the env bound but already finished', () => {
    const v = new AllocationView();
    v.assume('ns/a', 'n1', 100);
    v.observe('ns/a', 'n1', false, 100);
    expect(v.usageOf('n1')).toEqual({ envs: 0, memory: 0 });
  });
});

describe('WriteExpectations', () => {
  it('orders integer resourceVersions and refuses to order anything else', () => {
    expect(compareResourceVersions('9', '10')).toBe(-1);
    expect(compareResourceVersions('10', '10')).toBe(0);
    expect(compareResourceVersions('11', '10')).toBe(1);
    expect(compareResourceVersions('a', 'b')).toBeUndefined();
    expect(compareResourceVersions(undefined, '1')).toBeUndefined();
  });

  it('waits while the cache is older than the last write, even if the event came before the write returned', () => {
    const e = new WriteExpectations();
    e.expect('k', '20', 0);
    expect(e.waiting('k', '19', 1)).toBe(true);
    expect(e.waiting('k', '20', 2)).toBe(false);
    // The informer delivered 21 before expect('k', '21') ran: no wait at all.
    e.expect('k', '21', 3);
    expect(e.waiting('k', '22', 4)).toBe(false);
  });

  it('never waits more than 30 s', () => {
    const e = new WriteExpectations();
    e.expect('k', 'x', 0);
    expect(e.waiting('k', 'w', 29_000)).toBe(true);
    expect(e.waiting('k', 'w', 31_000)).toBe(false);
  });
});
