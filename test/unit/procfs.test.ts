import { nsInode, parseFlatKeyed, parseMountinfo, parseNetDev, procState, unescapeMountField } from '../../src/core/procfs.js';

const MOUNTINFO = `22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
101 22 252:0 /var/lib/disposable-env/envs/abc/rootfs//deleted /run/denv\\040x ro,relatime master:1 - ext4 /dev/vda rw
102 22 0:55 / /run/netns/denv-1 rw shared:5 - nsfs nsfs rw
garbage line
`;

describe('parseMountinfo', () => {
  const m = parseMountinfo(MOUNTINFO);
  it('parses every well-formed line and skips garbage', () => {
    expect(m.map((e) => e.id)).toEqual([22, 35, 101, 102]);
  });
  it('reads fields, optional fields and unescapes octal', () => {
    const e = m[2]!;
    expect(e.parentId).toBe(22);
    expect(e.root).toBe('/var/lib/disposable-env/envs/abc/rootfs//deleted');
    expect(e.mountPoint).toBe('/run/denv x');
    expect(e.optionalFields).toEqual(['master:1']);
    expect(e.fsType).toBe('ext4');
    expect(e.source).toBe('/dev/vda');
    expect(m[1]!.fsType).toBe('cgroup2');
    expect(m[3]!.fsType).toBe('nsfs');
  });
  it('unescapes tab, newline and backslash', () => {
    expect(unescapeMountField('a\\011b\\012c\\134d')).toBe('a\tb\nc\\d');
  });
});

describe('parseFlatKeyed', () => {
  it('reads cgroup.events and memory.events', () => {
    expect(parseFlatKeyed('populated 1\nfrozen 0\n')).toEqual({ populated: 1, frozen: 0 });
    expect(parseFlatKeyed('low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n')).toMatchObject({ high: 12, oom_kill: 1 });
  });
  it('ignores lines that are not key-number', () => {
    expect(parseFlatKeyed('usage_usec 100\nnonsense\nsome avg10=0.00\n')).toEqual({ usage_usec: 100 });
  });
});

describe('parseNetDev', () => {
  it('reads rx/tx counters per interface', () => {
    const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0: 1234567    890    0    0    0     0          0         0   765432     321    0    0    0     0       0          0
`;
    expect(parseNetDev(text)).toEqual({
      lo: { rxBytes: 840, rxPackets: 10, txBytes: 840, txPackets: 10 },
      eth0: { rxBytes: 1234567, rxPackets: 890, txBytes: 765432, txPackets: 321 },
    });
  });
});

describe('small parsers', () => {
  it('nsInode', () => {
    expect(nsInode('net:[4026531840]')).toBe(4026531840);
    expect(nsInode('garbage')).toBeUndefined();
  });
  it('procState handles parentheses in comm', () => {
    expect(procState('123 (we (ird) D 1 2 3')).toBe('D');
    expect(procState('1 (init) S 0 1 1')).toBe('S');
    expect(procState('')).toBeUndefined();
  });
});
