import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kubeconfigConnection } from '../../src/controller/kubeconfig.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'denv-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('kubeconfigConnection', () => {
  it('reads inline certificate data and the current context', async () => {
    const file = write(
      'inline.yaml',
      `apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://10.0.0.1:6443", certificate-authority-data: ${b64('CA')}, tls-server-name: api.internal}
users:
- name: u1
  user: {client-certificate-data: ${b64('CERT')}, client-key-data: ${b64('KEY')}}
contexts:
- name: ctx1
  context: {cluster: c1, user: u1}
current-context: ctx1
`,
    );
    const c = kubeconfigConnection(file);
    expect(c.server).toBe('https://10.0.0.1:6443');
    expect(c.tls.ca?.toString()).toBe('CA');
    expect(c.tls.cert?.toString()).toBe('CERT');
    expect(c.tls.key?.toString()).toBe('KEY');
    expect(c.tls.servername).toBe('api.internal');
    expect(c.tls.rejectUnauthorized).toBeUndefined();
    expect(await c.headers()).toEqual({});
  });

  it('reads certificate files relative to the kubeconfig, a token file, and honours --context', async () => {
    write('ca.crt', 'FILE-CA');
    write('token', 'tok-1\n');
    const file = write(
      'files.yaml',
      `clusters:
- {name: a, cluster: {server: "https://a:6443", certificate-authority: ca.crt}}
- {name: b, cluster: {server: "https://b:6443", insecure-skip-tls-verify: true}}
users:
- {name: tf, user: {tokenFile: token}}
- {name: basic, user: {username: admin, password: secret}}
- {name: tok, user: {token: abc}}
contexts:
- {name: one, context: {cluster: a, user: tf}}
- {name: two, context: {cluster: b, user: basic}}
- {name: three, context: {cluster: b, user: tok}}
current-context: one
`,
    );
    const one = kubeconfigConnection(file);
    expect(one.tls.ca?.toString()).toBe('FILE-CA');
    expect(await one.headers()).toEqual({ Authorization: 'Bearer tok-1' });
    const two = kubeconfigConnection(file, 'two');
    expect(two.server).toBe('https://b:6443');
    expect(two.tls.rejectUnauthorized).toBe(false);
    expect(await two.headers()).toEqual({ Authorization: `Basic ${b64('admin:secret')}` });
    expect(await kubeconfigConnection(file, 'three').headers()).toEqual({ Authorization: 'Bearer abc' });
  });

  it('says what is wrong with a kubeconfig it cannot use', () => {
    const file = write('bad.yaml', 'contexts: []\ncurrent-context: nope\n');
    expect(() => kubeconfigConnection(file)).toThrow(`kubeconfig ${file}: no context "nope"`);
    expect(() => kubeconfigConnection(path.join(dir, 'missing.yaml'))).toThrow(/cannot read it/);
  });
});
