// Shared ssh connections (handlers/ssh-login.ts) with the fake runner: which mounts share a login, the master's
// command line, its lifecycle (opened once, closed at Remove of its last volume, stopped with the plugin) and the
// failures that stay a volume's own.
import { describe, expect, it } from 'vitest';
import { create, get, mount, remove } from '../../adapter/docker/routes.js';
import { stopSharedConnections } from '../../handlers/ssh-login.js';
import type { Config } from '../../handlers/types.js';
import { makeDeps, type TestDeps, unmount } from './fixtures.js';

const SSHCMD = 'alice@files.example.com:/srv/data';

function sharingDeps(overrides: Partial<Config> = {}): TestDeps {
  const deps = makeDeps({ sharedConnectionIdleSeconds: 300, ...overrides });
  deps.fs.files.set('/keys/other_key', { content: 'another key', mode: 0o600 });
  deps.fs.files.set('/keys/known_hosts', { content: 'files.example.com ssh-ed25519 AAAA', mode: 0o600 });
  // A running master's control socket exists (ssh creates it, and removes it when the master ends).
  const exists = deps.fs.exists.bind(deps.fs);
  deps.fs.exists = async (path) => deps.mounts.masters.has(path) || exists(path);
  return deps;
}

async function createVol(deps: TestDeps, name: string, opts: Record<string, string> = {}): Promise<void> {
  expect(await create({ Name: name, Opts: { sshcmd: SSHCMD, ...opts } }, deps)).toEqual({ Err: '' });
}

const sshCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'ssh');
const masterCalls = (d: TestDeps) => sshCalls(d).filter((c) => c.args.includes('ControlMaster=yes'));
const controlCalls = (d: TestDeps, command: string) => sshCalls(d).filter((c) => c.args[c.args.indexOf('-O') + 1] === command && c.args.includes('-O'));
const sshfsCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'sshfs');
const controlPathOf = (args: string[]) => args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length);

async function idOf(deps: TestDeps, name: string): Promise<string | undefined> {
  return (await deps.store.get(name))?.sharedConnection;
}

describe('shared ssh connections', () => {
  it('logs in once for two volumes of the same server and credentials, with the exact master command', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a');
    await createVol(deps, 'b');
    expect(await mount({ Name: 'a', ID: '1' }, deps)).toMatchObject({ Err: '' });
    expect(await unmount({ Name: 'a', ID: '1' }, deps)).toMatchObject({ Err: '' });
    expect(await mount({ Name: 'b', ID: '1' }, deps)).toMatchObject({ Err: '' });
    const id = await idOf(deps, 'a');
    expect(id).toMatch(/^[0-9a-f]{20}0$/);
    expect(await idOf(deps, 'b')).toBe(id);
    const path = `/state/cm/${id}`;
    expect(masterCalls(deps)).toEqual([
      {
        program: 'ssh',
        args: [
          '-E', `${path}.log`, '-F', 'none', '-N',
          '-o', 'ControlMaster=yes', '-o', `ControlPath=${path}`, '-o', 'ControlPersist=300',
          '-o', 'UserKnownHostsFile=/state/known_hosts', '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'UpdateHostKeys=no',
          '-o', 'IdentityAgent=none', '-o', 'IdentitiesOnly=yes',
          '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=10',
          '-o', 'StrictHostKeyChecking=accept-new', '-o', 'Ciphers=^aes128-gcm@openssh.com', '-o', 'Compression=no', '-o', 'GSSAPIAuthentication=no',
          '-o', 'IdentityFile=/keys/id_ed25519', '-o', 'PasswordAuthentication=no', '-o', 'KbdInteractiveAuthentication=no',
          '-o', 'BatchMode=yes',
          '--', 'alice@files.example.com',
        ],
        timeoutMs: 20_000,
        endGroupOnFailure: true,
      },
    ]);
    // Both sshfs join the master and never become one themselves.
    for (const call of sshfsCalls(deps)) expect(call.args.slice(-4)).toEqual(['-o', `ControlPath=${path}`, '-o', 'ControlMaster=no']);
    expect(controlCalls(deps, 'check')).toHaveLength(0); // the master was looked up among the processes
    expect(masterCalls(deps)).toHaveLength(1);
    expect(deps.mounts.masters.has(path)).toBe(true);
    expect((await get({ Name: 'b' }, deps)).Volume?.Status).toMatchObject({ sharedConnection: 'up', sharedConnectionId: id });
  });

  it('a login carries one mounted volume at a time: volumes mounted together get logins of their own, reused later', async () => {
    const deps = sharingDeps();
    for (const name of ['a', 'b', 'c']) await createVol(deps, name);
    await mount({ Name: 'a', ID: '1' }, deps);
    await mount({ Name: 'b', ID: '1' }, deps);
    const [a, b] = [await idOf(deps, 'a'), await idOf(deps, 'b')];
    expect(a?.endsWith('0')).toBe(true);
    expect(b).toBe(`${a?.slice(0, -1)}1`);
    expect(masterCalls(deps)).toHaveLength(2);
    await unmount({ Name: 'a', ID: '1' }, deps);
    await mount({ Name: 'c', ID: '1' }, deps); // a's login is free again
    expect(await idOf(deps, 'c')).toBe(a);
    expect(masterCalls(deps)).toHaveLength(2);
  });

  it('asks ssh -O check whether a master runs when processes cannot be seen', async () => {
    const deps = sharingDeps();
    // The same simulation, without a process table.
    delete deps.processes;
    await createVol(deps, 'a');
    await createVol(deps, 'b');
    await mount({ Name: 'a', ID: '1' }, deps);
    await unmount({ Name: 'a', ID: '1' }, deps);
    await mount({ Name: 'b', ID: '1' }, deps);
    // The first Mount found no socket: nothing to ask; the second asked when choosing the login and again under its lock.
    expect(controlCalls(deps, 'check')).toHaveLength(2);
    expect(masterCalls(deps)).toHaveLength(1);
    expect((await get({ Name: 'b' }, deps)).Volume?.Status).toMatchObject({ sharedConnectionId: await idOf(deps, 'a') });
  });

  it('never shares between different credentials or settings', async () => {
    const variants: Array<[string, Record<string, string>, string]> = [
      ['base', {}, SSHCMD],
      ['user', {}, 'bob@files.example.com:/srv/data'],
      ['host', {}, 'alice@other.example.com:/srv/data'],
      ['port', { port: '2222' }, SSHCMD],
      ['keyfile', { IdentityFile: 'other_key' }, SSHCMD],
      ['keytext', { key: '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----' }, SSHCMD],
      ['knownhosts', { UserKnownHostsFile: 'known_hosts' }, SSHCMD],
      ['strict', { StrictHostKeyChecking: 'yes' }, SSHCMD],
      ['cipher', { Ciphers: 'chacha20-poly1305@openssh.com' }, SSHCMD],
      ['kex', { KexAlgorithms: '^curve25519-sha256' }, SSHCMD],
      ['compression', { Compression: 'yes' }, SSHCMD],
      ['alive', { ServerAliveInterval: '5' }, SSHCMD],
    ];
    const deps = sharingDeps();
    for (const [name, opts, sshcmd] of variants) {
      expect(await create({ Name: name, Opts: { sshcmd, ...opts } }, deps)).toEqual({ Err: '' });
      expect(await mount({ Name: name, ID: '1' }, deps)).toMatchObject({ Err: '' });
    }
    const ids = await Promise.all(variants.map(([name]) => idOf(deps, name)));
    expect(new Set(ids).size).toBe(variants.length);
    expect(masterCalls(deps)).toHaveLength(variants.length);
  });

  it('does not reuse a login made with a key file whose content has changed since', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a', { IdentityFile: 'other_key' });
    await mount({ Name: 'a', ID: '1' }, deps);
    const before = await idOf(deps, 'a');
    deps.fs.files.set('/keys/other_key', { content: 'replaced key', mode: 0o600 });
    await createVol(deps, 'b', { IdentityFile: 'other_key' });
    await mount({ Name: 'b', ID: '1' }, deps);
    expect(await idOf(deps, 'b')).not.toBe(before);
  });

  it('a volume whose login fails gets its own error, runs no sshfs and leaves nothing behind', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'bad', { IdentityFile: 'other_key' });
    deps.runner.script = (call) => {
      if (call.program !== 'ssh' || !call.args.includes('ControlMaster=yes')) return undefined;
      deps.fs.files.set(call.args[1] ?? '', { content: 'alice@files.example.com: Permission denied (publickey).\n', mode: 0o600 });
      return { exitCode: 255 };
    };
    const res = await mount({ Name: 'bad', ID: '1' }, deps);
    expect(res.Err).toMatch(/Permission denied \(publickey\).*the server refused the login/);
    expect(sshfsCalls(deps)).toHaveLength(0);
    expect(deps.fs.dirs.has('/mnt/volumes/bad')).toBe(false);
    const status = (await get({ Name: 'bad' }, deps)).Volume?.Status;
    expect(status).toMatchObject({ lastSshMessage: 'alice@files.example.com: Permission denied (publickey).' });
    expect(status?.lastError).toMatch(/Permission denied/);
  });

  it('password logins never share, and SHARED_CONNECTION_IDLE=0 turns sharing off', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'pw', { password: 's3cret' });
    await mount({ Name: 'pw', ID: '1' }, deps);
    const off = makeDeps({ sharedConnectionIdleSeconds: 0 });
    await createVol(off, 'k');
    await mount({ Name: 'k', ID: '1' }, off);
    for (const d of [deps, off]) {
      expect(sshCalls(d)).toEqual([]);
      expect(sshfsCalls(d)[0]?.args.some((a) => a.startsWith('ControlPath='))).toBe(false);
    }
    expect(await idOf(deps, 'pw')).toBeUndefined();
    expect((await get({ Name: 'pw' }, deps)).Volume?.Status).toMatchObject({ sharedConnection: 'none' });
  });

  it('a state directory too long for a socket path logs in without sharing', async () => {
    const deps = sharingDeps({ stateDir: `/${'s'.repeat(70)}` });
    deps.fs.dirs.add(`/${'s'.repeat(70)}`);
    await createVol(deps, 'a');
    expect(await mount({ Name: 'a', ID: '1' }, deps)).toMatchObject({ Err: '' });
    expect(sshCalls(deps)).toEqual([]);
    expect(deps.logs.some((l) => l.includes('too long for ssh control sockets'))).toBe(true);
  });

  it('closes the master when the last volume that used it is removed, not before', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a');
    await createVol(deps, 'b');
    await mount({ Name: 'a', ID: '1' }, deps);
    await unmount({ Name: 'a', ID: '1' }, deps);
    await mount({ Name: 'b', ID: '1' }, deps);
    const path = `/state/cm/${await idOf(deps, 'a')}`;
    expect(await idOf(deps, 'b')).toBe(await idOf(deps, 'a'));
    expect(await remove({ Name: 'a' }, deps)).toEqual({ Err: '' });
    expect(controlCalls(deps, 'exit')).toHaveLength(0);
    expect(deps.mounts.masters.has(path)).toBe(true);
    await unmount({ Name: 'b', ID: '1' }, deps);
    expect((await get({ Name: 'b' }, deps)).Volume?.Status).toMatchObject({ sharedConnection: 'up' }); // idle, still open
    expect(await remove({ Name: 'b' }, deps)).toEqual({ Err: '' });
    expect(controlCalls(deps, 'exit').map((c) => controlPathOf(c.args))).toEqual([path]);
    expect(deps.mounts.masters.has(path)).toBe(false);
  });

  it('replaces a master that is gone (idle timeout, killed) at the next Mount', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a');
    await mount({ Name: 'a', ID: '1' }, deps);
    await unmount({ Name: 'a', ID: '1' }, deps);
    deps.mounts.masters.clear(); // it exited
    expect((await get({ Name: 'a' }, deps)).Volume?.Status).toMatchObject({ sharedConnection: 'closed' });
    await mount({ Name: 'a', ID: '2' }, deps);
    expect(masterCalls(deps)).toHaveLength(2);
    expect((await get({ Name: 'a' }, deps)).Volume?.Status).toMatchObject({ sharedConnection: 'up' });
  });

  it('max_conns > 1 and more than 16 volumes mounted at once log in alone; so does a mount the server refuses a session', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'multi', { max_conns: '4' });
    await mount({ Name: 'multi', ID: '1' }, deps);
    expect(await idOf(deps, 'multi')).toBeUndefined();
    expect(sshCalls(deps)).toEqual([]);
    for (let i = 0; i < 17; i++) {
      await createVol(deps, `v${i}`);
      await mount({ Name: `v${i}`, ID: '1' }, deps);
    }
    expect(new Set(await Promise.all(Array.from({ length: 16 }, (_, i) => idOf(deps, `v${i}`)))).size).toBe(16);
    expect(await idOf(deps, 'v16')).toBeUndefined();
    expect(sshfsCalls(deps).at(-1)?.args.some((a) => a.startsWith('ControlPath='))).toBe(false);

    const refused = sharingDeps();
    await createVol(refused, 'r');
    refused.runner.script = (call) => {
      if (call.program !== 'sshfs' || !call.args.some((a) => a.startsWith('ControlPath='))) return undefined;
      refused.fs.files.set('/state/logs/r.ssh.log', { content: 'mux_client_request_session: session request failed: Session open refused by peer\n', mode: 0o600 });
      return { exitCode: 1, stderr: 'read: Connection reset by peer' };
    };
    expect(await mount({ Name: 'r', ID: '1' }, refused)).toMatchObject({ Err: '' });
    expect(sshfsCalls(refused)).toHaveLength(2);
    expect(await idOf(refused, 'r')).toBeUndefined();
    expect(refused.logs.some((l) => l.includes('refused a session'))).toBe(true);
  });

  it("Status shows why the shared login ended (its master's log) when the volume's own ssh said nothing that matters", async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a', { ServerAliveInterval: '1', ServerAliveCountMax: '2' });
    await mount({ Name: 'a', ID: '1' }, deps);
    const id = await idOf(deps, 'a');
    deps.mounts.masters.clear(); // its keepalives went unanswered
    deps.fs.files.set(`/state/cm/${id}.log`, { content: 'Timeout, server files.example.com not responding.\n', mode: 0o600 });
    // sshfs reconnected with a login of its own: its ssh found no socket first.
    deps.fs.files.set('/state/logs/a.ssh.log', { content: 'Control socket connect(/state/cm/x): No such file or directory\n', mode: 0o600 });
    expect((await get({ Name: 'a' }, deps)).Volume?.Status).toMatchObject({
      lastSshMessage: 'Timeout, server files.example.com not responding.',
      sharedConnection: 'closed',
    });
    deps.fs.files.set('/state/logs/a.ssh.log', { content: 'Connection closed by 10.0.0.1 port 22\n', mode: 0o600 });
    expect((await get({ Name: 'a' }, deps)).Volume?.Status).toMatchObject({ lastSshMessage: 'Connection closed by 10.0.0.1 port 22' });
  });

  it('stops every master when the plugin stops', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a');
    await createVol(deps, 'b', { port: '2222' });
    await mount({ Name: 'a', ID: '1' }, deps);
    await mount({ Name: 'b', ID: '1' }, deps);
    await stopSharedConnections(deps);
    expect(controlCalls(deps, 'stop')).toHaveLength(2);
    expect(deps.mounts.masters.size).toBe(0);
  });

  it('closes the login a failed Mount opened, unless a mounted volume uses it (issue 19: no logins left by failures)', async () => {
    const deps = sharingDeps();
    await createVol(deps, 'a');
    await createVol(deps, 'b');
    // sshfs fails over the new login (e.g. the remote directory is missing): the login it opened is closed.
    deps.runner.script = (c) => (c.program === 'sshfs' ? { exitCode: 1 } : undefined);
    expect((await mount({ Name: 'a', ID: '1' }, deps)).Err).not.toBe('');
    expect(masterCalls(deps)).toHaveLength(1);
    expect(controlCalls(deps, 'exit')).toHaveLength(1);
    expect(deps.mounts.masters.size).toBe(0);
    // The login of a mounted volume stays when another volume's Mount fails (that one opened a login of its own).
    deps.runner.script = () => undefined;
    expect((await mount({ Name: 'a', ID: '1' }, deps)).Err).toBe('');
    const kept = controlPathOf(masterCalls(deps)[1]?.args ?? []) ?? '';
    deps.runner.script = (c) => (c.program === 'sshfs' ? { exitCode: 1 } : undefined);
    expect((await mount({ Name: 'b', ID: '1' }, deps)).Err).not.toBe('');
    expect(controlCalls(deps, 'exit')).toHaveLength(2);
    expect([...deps.mounts.masters]).toEqual([kept]);
    // A Mount that joined a running login (it opened none) leaves it be.
    await unmount({ Name: 'a', ID: '1' }, deps);
    expect((await mount({ Name: 'b', ID: '2' }, deps)).Err).not.toBe('');
    expect(controlCalls(deps, 'exit')).toHaveLength(2);
    expect([...deps.mounts.masters]).toEqual([kept]);
  });
});
