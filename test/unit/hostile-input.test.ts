// Issue 9 at the handler level: no option may reach a file or a credential it was not given, and old volumes whose
// options today's rules refuse still answer Get and List.
import { describe, expect, it } from 'vitest';
import { create, get, list, mount } from '../../adapter/docker/routes.js';
import { create as createVolume } from '../../handlers/endpoints/create.js';
import { unmountIdle } from '../../handlers/lifecycle.js';
import { DEFAULT_KEY, makeDeps, type TestDeps, unmount } from './fixtures.js';

const SSHCMD = 'alice@files.example.com:/srv/data';
const sshfsArgs = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'sshfs').map((c) => c.args);
const sshOption = (args: string[] | undefined, name: string) =>
  args?.filter((a) => a.startsWith(`${name}=`)).map((a) => a.slice(name.length + 1));

async function refused(deps: TestDeps, opts: Record<string, string>, message: RegExp): Promise<string> {
  const files = [...deps.fs.files.keys()];
  const res = await create({ Name: 'v', Opts: { sshcmd: SSHCMD, ...opts } }, deps);
  expect(res.Err).toMatch(message);
  expect(await deps.store.list()).toEqual([]);
  expect([...deps.fs.files.keys()]).toEqual(files);
  return res.Err;
}

describe('files named in options come from the keys directory only', () => {
  it('accepts a key by name or by its path in the keys directory, and hands ssh the resolved file', async () => {
    const deps = makeDeps();
    deps.fs.files.set('/keys/team/id_rsa', { content: 'k', mode: 0o600 });
    expect(await create({ Name: 'a', Opts: { sshcmd: SSHCMD, IdentityFile: 'team/id_rsa' } }, deps)).toEqual({ Err: '' });
    expect(await create({ Name: 'b', Opts: { sshcmd: SSHCMD, IdentityFile: '/keys/team/id_rsa' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'a', ID: 'x' }, deps);
    expect(sshOption(sshfsArgs(deps)[0], 'IdentityFile')).toEqual(['/keys/team/id_rsa']);
  });

  it('refuses paths outside it without looking at them, and says the same whatever lies there', async () => {
    const deps = makeDeps();
    deps.fs.files.set('/etc/shadow', { content: 'secret', mode: 0o600 });
    const shadow = await refused(deps, { IdentityFile: '/etc/shadow' }, /must name a file in the plugin's keys directory \/keys/);
    const missing = await refused(deps, { IdentityFile: '/etc/no-such-file' }, /must name a file in the plugin's keys directory/);
    expect(shadow.replace('/etc/shadow', 'X')).toBe(missing.replace('/etc/no-such-file', 'X'));
    await refused(deps, { UserKnownHostsFile: '/mnt/state/volumes.journal' }, /UserKnownHostsFile must name a file in the plugin's keys directory/);
    await refused(deps, { password_file: '/root/pw' }, /password_file must name a file/);
    await refused(deps, { IdentityFile: '/keys/../state/keys/other.key' }, /must name a file/);
  });

  it('refuses a symlink in the keys directory that leads out of it, a directory, a huge file, and the state directory', async () => {
    const deps = makeDeps();
    deps.fs.files.set('/state/keys/other.key', { content: 'another volume key', mode: 0o600 });
    deps.fs.links.set('/keys/other', '/state/keys/other.key');
    deps.fs.files.set('/root/.ssh/id_rsa', { content: 'root key', mode: 0o600 });
    deps.fs.links.set('/keys/root', '/root/.ssh/id_rsa');
    deps.fs.dirs.add('/keys/dir');
    deps.fs.files.set('/keys/huge', { content: 'x'.repeat(70 * 1024), mode: 0o600 });
    const messages = [];
    for (const name of ['other', 'root', 'dir', 'huge', 'missing']) {
      messages.push((await refused(deps, { IdentityFile: name }, /is not a readable file of at most 64 KiB in the plugin's keys directory/)).replace(name, 'X'));
    }
    expect(new Set(messages).size).toBe(1); // one message: nothing tells which of these it was
  });

  it('checks the file again at every Mount, and fails with what to do when it went away', async () => {
    const deps = makeDeps();
    deps.fs.files.set('/keys/id', { content: 'k', mode: 0o600 });
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, IdentityFile: 'id' } }, deps)).toEqual({ Err: '' });
    deps.fs.files.delete('/keys/id');
    deps.fs.links.set('/keys/id', '/root/.ssh/id_rsa');
    deps.fs.files.set('/root/.ssh/id_rsa', { content: 'root key', mode: 0o600 });
    expect((await mount({ Name: 'v', ID: 'x' }, deps)).Err).toMatch(/IdentityFile \/keys\/id is not a readable file/);
    expect(sshfsArgs(deps)).toEqual([]);
    expect((await get({ Name: 'v' }, deps)).Volume?.Status).toMatchObject({ lastError: expect.stringMatching(/keys directory/) });
  });
});

describe('credentials: only what the volume was given, or the operator default key', () => {
  it('refuses a volume with no credential when the keys directory holds no default key, saying what to pass', async () => {
    const deps = makeDeps({}, false);
    await refused(deps, {}, /no credential: give -o IdentityFile=.* -o key=.* -o password_file=.* -o password=.*default key \(id_ed25519, id_ecdsa, id_rsa\) in the plugin's keys directory \/keys/);
  });

  it("uses the operator's default key for a volume without a credential option, and says so in Status", async () => {
    const deps = makeDeps();
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'v', ID: 'x' }, deps);
    expect(sshOption(sshfsArgs(deps)[0], 'IdentityFile')).toEqual([DEFAULT_KEY]);
    expect((await get({ Name: 'v' }, deps)).Volume?.Status).toMatchObject({ auth: 'default key in /keys' });
  });

  it('never lets ssh use an agent, ssh_config, the host known_hosts, or keys it was not given', async () => {
    const deps = makeDeps();
    await create({ Name: 'k', Opts: { sshcmd: SSHCMD } }, deps);
    await create({ Name: 'p', Opts: { sshcmd: SSHCMD, password: 'pw' } }, deps);
    await mount({ Name: 'k', ID: 'x' }, deps);
    await mount({ Name: 'p', ID: 'x' }, deps);
    for (const args of sshfsArgs(deps)) {
      expect(args).toContain('ssh_command=ssh -E /state/logs/' + (args.includes('password_stdin') ? 'p' : 'k') + '.ssh.log -F none');
      expect(sshOption(args, 'IdentityAgent')).toEqual(['none']);
      expect(sshOption(args, 'IdentitiesOnly')).toEqual(['yes']);
      expect(sshOption(args, 'GlobalKnownHostsFile')).toEqual(['/dev/null']);
      expect(sshOption(args, 'UpdateHostKeys')).toEqual(['no']);
    }
    const password = sshfsArgs(deps)[1];
    expect(sshOption(password, 'IdentityFile')).toEqual(['none']);
    expect(sshOption(password, 'PubkeyAuthentication')).toEqual(['no']);
  });

  it('reads a password_file from the keys directory at Mount and gives it on stdin, never in argv or Status', async () => {
    const deps = makeDeps();
    deps.fs.files.set('/keys/pw', { content: '# sshfs-for: alice@files.example.com\ns3cr3t, with $pecial\n', mode: 0o600 });
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, password_file: 'pw' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'v', ID: 'x' }, deps);
    const call = deps.runner.calls.find((c) => c.program === 'sshfs');
    expect(call?.input).toBe('s3cr3t, with $pecial\n');
    expect(call?.args).toContain('password_stdin');
    expect(JSON.stringify(call?.args)).not.toContain('s3cr3t');
    const status = (await get({ Name: 'v' }, deps)).Volume?.Status;
    expect(status).toMatchObject({ auth: 'password_file pw' });
    expect(JSON.stringify(status)).not.toContain('s3cr3t');
    deps.fs.files.set('/keys/pw2', { content: '# sshfs-for: alice@files.example.com\ntwo\nlines\n', mode: 0o600 });
    expect((await create({ Name: 'w', Opts: { sshcmd: SSHCMD, password_file: 'pw2' } }, deps)).Err).toMatch(/on one line/);
  });

  it("checks host keys against the user's known_hosts read-only: strict, never pinning into it", async () => {
    const deps = makeDeps();
    deps.fs.files.set('/keys/known_hosts', { content: 'h ssh-ed25519 AAAA\n', mode: 0o600 });
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, UserKnownHostsFile: 'known_hosts' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'v', ID: 'x' }, deps);
    expect(sshOption(sshfsArgs(deps)[0], 'UserKnownHostsFile')).toEqual(['/keys/known_hosts']);
    expect(sshOption(sshfsArgs(deps)[0], 'StrictHostKeyChecking')).toEqual(['yes']);
    await refused(
      makeDeps(),
      { UserKnownHostsFile: 'known_hosts', StrictHostKeyChecking: 'accept-new' },
      /UserKnownHostsFile is only read, never written/,
    );
  });
});

describe('edges', () => {
  it('refuses at Create a name too long for the files named after it, with the limit', async () => {
    const deps = makeDeps();
    const res = await create({ Name: 'a'.repeat(201), Opts: { sshcmd: SSHCMD } }, deps);
    expect(res.Err).toMatch(/volume name is 201 characters long; use at most 200/);
    expect(await deps.store.list()).toEqual([]);
    expect(await create({ Name: 'a'.repeat(200), Opts: { sshcmd: SSHCMD } }, deps)).toEqual({ Err: '' });
  });

  it('refuses at Create, called by any front end, a name that is not one path component of the allowed characters', async () => {
    const deps = makeDeps();
    for (const name of ['../escape', 'a/b', '.hidden', '-flag', 'a'.repeat(256)]) {
      await expect(createVolume({ name, options: { sshcmd: SSHCMD } }, deps)).rejects.toThrow(/volume name "[^"]*" is not valid/);
    }
    expect(await deps.store.list()).toEqual([]);
    expect(deps.fs.files.size).toBe(1); // the default key only: nothing was written
  });

  it('counts references for any mount ID, __proto__ and constructor included', async () => {
    const deps = makeDeps();
    await create({ Name: 'v', Opts: { sshcmd: SSHCMD } }, deps);
    for (const id of ['__proto__', 'constructor', '__proto__']) expect((await mount({ Name: 'v', ID: id }, deps)).Err).toBe('');
    let rec = await deps.store.get('v');
    expect(JSON.stringify(rec?.mounts)).toBe('{"__proto__":2,"constructor":1}');
    expect(Object.getPrototypeOf(rec?.mounts)).toBe(Object.prototype);
    await unmount({ Name: 'v', ID: '__proto__' }, deps);
    await unmount({ Name: 'v', ID: '__proto__' }, deps);
    rec = await deps.store.get('v');
    expect(JSON.stringify(rec?.mounts)).toBe('{"constructor":1}');
    expect(deps.mounts.mounted.size).toBe(1); // still in use by "constructor"
    await unmount({ Name: 'v', ID: 'constructor' }, deps);
    expect(deps.mounts.mounted.size).toBe(0);
  });

  it('lets only the current delayed-unmount timer unmount: an older one that fires late does nothing', async () => {
    let now = Date.parse('2026-01-02T03:04:05.000Z');
    const deps = makeDeps();
    deps.now = () => new Date(now);
    await create({ Name: 'v', Opts: { sshcmd: SSHCMD, unmount_delay: '30' } }, deps);
    await mount({ Name: 'v', ID: 'a' }, deps);
    await unmount({ Name: 'v', ID: 'a' }, deps);
    const first = (await deps.store.get('v'))?.idleUntil ?? '';
    now += 10_000;
    await mount({ Name: 'v', ID: 'b' }, deps);
    await unmount({ Name: 'v', ID: 'b' }, deps);
    const second = (await deps.store.get('v'))?.idleUntil;
    expect(second).not.toBe(first);
    await unmountIdle('v', first, deps); // the first arming, fired late
    expect(deps.mounts.mounted.size).toBe(1);
    await unmountIdle('v', second ?? '', deps);
    expect(deps.mounts.mounted.size).toBe(0);
  });
});

describe('volumes created before these rules', () => {
  async function legacy(options: Record<string, string>): Promise<TestDeps> {
    const deps = makeDeps({}, false);
    await deps.store.put({ name: 'old', createdAt: '2025-01-01T00:00:00.000Z', options, mountpoint: '/mnt/volumes/old', mounts: {} });
    return deps;
  }

  it('keep answering Get and List (dockerd forgets volumes whose Get fails), with the reason in Status', async () => {
    const deps = await legacy({ sshcmd: SSHCMD, IdentityFile: '/root/.ssh/id_rsa' });
    const res = await get({ Name: 'old' }, deps);
    expect(res.Err).toBe('');
    expect(res.Volume?.Status).toMatchObject({
      mounted: false,
      remote: SSHCMD,
      invalid: expect.stringMatching(/created with options this version refuses: option IdentityFile must name a file in the plugin's keys directory.*docker volume rm old/),
    });
    expect((await list({}, deps)).Volumes).toEqual([{ Name: 'old', Mountpoint: '/mnt/volumes/old' }]);
  });

  it('fail Mount with what to change, running nothing', async () => {
    const deps = await legacy({ sshcmd: SSHCMD, IdentityFile: '/root/.ssh/id_rsa' });
    expect((await mount({ Name: 'old', ID: 'x' }, deps)).Err).toMatch(/refuses: option IdentityFile .*Remove it and create it again/);
    const noCredential = await legacy({ sshcmd: SSHCMD });
    expect((await mount({ Name: 'old', ID: 'x' }, noCredential)).Err).toMatch(/no credential: give -o IdentityFile/);
    expect(deps.runner.calls).toEqual([]);
    expect(noCredential.runner.calls).toEqual([]);
  });
});
