import { describe, expect, it } from 'vitest';
import { create, get, list, mount, path, remove, capabilities, activate } from '../../adapter/docker/routes.js';
import type { ProcessId } from '../../handlers/types.js';
import { unmountIdle } from '../../handlers/lifecycle.js';
import { makeDeps, TEST_KEY, type TestDeps, unmount } from './fixtures.js';
import { unmount as routeUnmount } from '../../adapter/docker/routes.js';


const SSHCMD = 'alice@files.example.com:/srv/data';
const MP = '/mnt/volumes/vol1';
const LOG = '/state/logs/vol1.ssh.log';

async function created(opts: Record<string, string> = {}, name = 'vol1'): Promise<TestDeps> {
  const deps = makeDeps();
  expect(await create({ Name: name, Opts: { sshcmd: SSHCMD, ...opts } }, deps)).toEqual({ Err: '' });
  return deps;
}

/** The first process the fake runner starts: the first sshfs. */
const SSHFS = { pid: 1000, startTicks: 4242 };

const sshfsCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'sshfs');
const unmountCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'fusermount3');

describe('Create', () => {
  it('stores the volume with its own mountpoint and runs nothing', async () => {
    const deps = await created();
    const rec = await deps.store.get('vol1');
    expect(rec).toMatchObject({ name: 'vol1', mountpoint: MP, mounts: {}, createdAt: '2026-01-02T03:04:05.000Z' });
    expect(deps.runner.calls).toEqual([]);
    expect(deps.runner.prepared).toBe(1); // a Mount is likely next: the runner may load what it needs
  });

  it('accepts Opts: null (and then needs sshcmd)', async () => {
    const deps = makeDeps();
    expect((await create({ Name: 'v', Opts: null }, deps)).Err).toMatch(/sshcmd is required/);
    expect(await deps.store.list()).toEqual([]);
  });

  it.each([
    [{ Name: 'v', Opts: { sshcmd: SSHCMD, ProxyCommand: 'touch /tmp/pwned' } }, /ProxyCommand" is not supported/],
    [{ Name: 'v', Opts: { sshcmd: '-oProxyCommand=x:/p' } }, /not a valid host/],
    [{ Name: '../etc', Opts: { sshcmd: SSHCMD } }, /volume name .* is not valid/],
    [{ Name: 'v', Opts: { sshcmd: 42 } }, /must be a string/],
    [{ Name: 'v', Opts: [] }, /Opts must be an object/],
    [{ Opts: { sshcmd: SSHCMD } }, /needs a Name/],
    ['just a string', /must be a JSON object/],
    [{ Name: 'v', Opts: { sshcmd: SSHCMD, IdentityFile: '/keys/missing' } }, /IdentityFile \/keys\/missing is not a readable file .* in the plugin's keys directory \/keys/],
  ])('refuses bad input %j and changes nothing', async (request, message) => {
    const deps = makeDeps();
    const files = [...deps.fs.files.keys()];
    const res = await create(request, deps);
    expect(res.Err).toMatch(message);
    expect(await deps.store.list()).toEqual([]);
    expect([...deps.fs.files.keys()]).toEqual(files);
    expect(deps.runner.calls).toEqual([]);
  });

  it('writes the key option to a 0600 key file and keeps only its digest in state', async () => {
    const deps = await created({ key: TEST_KEY });
    const rec = await deps.store.get('vol1');
    expect(rec?.keyFile).toBe('/state/keys/vol1.key');
    expect(deps.fs.files.get('/state/keys/vol1.key')).toEqual({ content: `${TEST_KEY}\n`, mode: 0o600 });
    expect(JSON.stringify(rec)).not.toContain('BEGIN OPENSSH');
    expect(rec?.options.key).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('answers a repeated Create with the same options without error, and refuses different ones', async () => {
    const deps = await created({ key: TEST_KEY });
    expect(await create({ Name: 'vol1', Opts: { sshcmd: SSHCMD, key: TEST_KEY } }, deps)).toEqual({ Err: '' });
    const res = await create({ Name: 'vol1', Opts: { sshcmd: 'bob@other:/x' } }, deps);
    expect(res.Err).toMatch(/already exists with different options/);
    expect((await deps.store.get('vol1'))?.options.sshcmd).toBe(SSHCMD);
  });

  it('asks ssh about a Ciphers or KexAlgorithms name at Create, and refuses one ssh does not know with ssh\'s own line', async () => {
    const deps = makeDeps();
    deps.runner.script = (c) =>
      c.program === 'ssh' && c.args.includes('Ciphers=aes999') ? { exitCode: 255, stderr: "command-line line 0: Bad SSH2 cipher spec 'aes999'." } : undefined;
    const res = await create({ Name: 'v', Opts: { sshcmd: SSHCMD, Ciphers: 'aes999' } }, deps);
    expect(res.Err).toBe("ssh refuses -o Ciphers=aes999: command-line line 0: Bad SSH2 cipher spec 'aes999'. (ssh -Q cipher, ssh -Q kex, ssh -Q HostKeyAlgorithms and ssh -Q PubkeyAcceptedAlgorithms list the names it knows)");
    expect(await deps.store.list()).toEqual([]);
    // ssh -G prints its configuration and connects nowhere; no config file can add to it.
    expect(deps.runner.calls).toEqual([{ program: 'ssh', args: ['-G', '-F', '/dev/null', '-o', 'Ciphers=aes999', 'localhost'], timeoutMs: 10_000 }]);
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, Ciphers: '^aes256-gcm@openssh.com', KexAlgorithms: 'curve25519-sha256' } }, deps)).toEqual({ Err: '' });
    expect(deps.runner.calls[1]?.args).toEqual(['-G', '-F', '/dev/null', '-o', 'Ciphers=^aes256-gcm@openssh.com', '-o', 'KexAlgorithms=curve25519-sha256', 'localhost']);
  });

  it('keeps working for a volume stored with the old umask option: mode 0777 minus it', async () => {
    const deps = makeDeps();
    await deps.store.put({ name: 'old', createdAt: '2026-01-01T00:00:00.000Z', options: { sshcmd: SSHCMD, umask: '027' }, mountpoint: '/mnt/volumes/old', mounts: {} });
    expect((await mount({ Name: 'old', ID: 'a' }, deps)).Err).toBe('');
    expect(sshfsCalls(deps)[0]?.args).toContain('umask=027');
  });

  it('checks IdentityFile exists where the plugin runs', async () => {
    const deps = makeDeps();
    await deps.fs.writeSecretFile('/keys/id', 'k');
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, IdentityFile: '/keys/id' } }, deps)).toEqual({ Err: '' });
  });
});

describe('Mount and Unmount', () => {
  it('runs sshfs with the exact arguments on the first reference', async () => {
    const deps = await created({ port: '2222', key: TEST_KEY });
    const res = await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(res).toEqual({ Mountpoint: MP, Err: '' });
    expect(sshfsCalls(deps)).toEqual([
      {
        program: 'sshfs',
        args: [
          SSHCMD, MP, '-f', '-p', '2222',
          '-o', 'reconnect', '-o', 'allow_other', '-o', 'idmap=user',
          '-o', 'ssh_command=ssh -E /state/logs/vol1.ssh.log -F none',
          '-o', 'UserKnownHostsFile=/state/known_hosts', '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'UpdateHostKeys=no',
          '-o', 'IdentityAgent=none', '-o', 'IdentitiesOnly=yes',
          '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=10',
          '-o', 'StrictHostKeyChecking=accept-new', '-o', 'Ciphers=^aes128-gcm@openssh.com', '-o', 'Compression=no', '-o', 'GSSAPIAuthentication=no',
          '-o', 'IdentityFile=/state/keys/vol1.key', '-o', 'PasswordAuthentication=no', '-o', 'KbdInteractiveAuthentication=no',
          '-o', 'BatchMode=yes',
        ],
        // sshfs runs in the foreground as the plugin's child; what it and its ssh say goes to the volume's log.
        outputFile: LOG,
      },
    ]);
    expect(deps.fs.dirs.has(MP)).toBe(true);
  });

  it('sets the kernel read-ahead of a new mount: 1024 KiB, or read_ahead_kb', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(deps.mounts.readAhead.get(MP)).toBe(1024);
    expect((await get({ Name: 'vol1' }, deps)).Volume?.Status).toMatchObject({ readAheadKb: 1024 });
    const tuned = await created({ read_ahead_kb: '4096' }, 'vol2');
    await mount({ Name: 'vol2', ID: 'a' }, tuned);
    expect(tuned.mounts.readAhead.get('/mnt/volumes/vol2')).toBe(4096);
    await mount({ Name: 'vol2', ID: 'b' }, tuned); // already mounted: nothing is run or set again
    expect(sshfsCalls(tuned)).toHaveLength(1);
  });

  it('mounts all the same when read-ahead cannot be set, and logs why', async () => {
    const deps = await created();
    deps.readAhead.set = async () => {
      throw new Error("EROFS: read-only file system, open '/sys/class/bdi/0:50/read_ahead_kb'");
    };
    expect(await mount({ Name: 'vol1', ID: 'a' }, deps)).toEqual({ Mountpoint: MP, Err: '' });
    expect(await deps.mounts.state(MP)).toBe('mounted');
    // inspect shows what the kernel really uses, not what was asked for
    expect((await get({ Name: 'vol1' }, deps)).Volume?.Status).toMatchObject({ readAheadKb: 128 });
    expect(deps.logs).toContain(
      "info volume vol1: read_ahead_kb=1024 not set, sequential reads will be slower (EROFS: read-only file system, open '/sys/class/bdi/0:50/read_ahead_kb')",
    );
  });

  it('gives the password on stdin only', async () => {
    const deps = await created({ password: 's3cr,et $pw' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    const [call] = sshfsCalls(deps);
    expect(call?.input).toBe('s3cr,et $pw\n');
    expect(call?.args).toContain('password_stdin');
    expect(call?.args.join(' ')).not.toContain('s3cr');
    // FUSE would split an unescaped comma into a separate (unknown) option.
    expect(call?.args).toContain('PreferredAuthentications=password\\,keyboard-interactive');
    expect(deps.logs.join('\n')).not.toContain('s3cr');
  });

  // Each step: [action, id, expected sshfs runs so far, expected unmounts so far, expected references]
  const sequences: [string, [('m' | 'u'), string, number, number, number][]][] = [
    ['one container', [['m', 'a', 1, 0, 1], ['u', 'a', 1, 1, 0]]],
    ['two IDs', [['m', 'a', 1, 0, 1], ['m', 'b', 1, 0, 2], ['u', 'a', 1, 0, 1], ['u', 'b', 1, 1, 0]]],
    ['docker cp repeats an ID', [['m', 'a', 1, 0, 1], ['m', 'a', 1, 0, 2], ['u', 'a', 1, 0, 1], ['u', 'a', 1, 1, 0]]],
    ['unknown ID is ignored', [['m', 'a', 1, 0, 1], ['u', 'zzz', 1, 0, 1], ['u', 'a', 1, 1, 0]]],
    ['unmount before any mount', [['u', 'a', 0, 0, 0]]],
    ['IDs named like Object.prototype members', [['m', 'toString', 1, 0, 1], ['u', 'constructor', 1, 0, 1], ['u', 'toString', 1, 1, 0]]],
    ['remount after the last unmount', [['m', 'a', 1, 0, 1], ['u', 'a', 1, 1, 0], ['m', 'b', 2, 1, 1]]],
  ];
  it.each(sequences)('counts references per ID as a multiset: %s', async (_label, steps) => {
    const deps = await created();
    for (const [op, id, runs, unmounts, refs] of steps) {
      const res = op === 'm' ? await mount({ Name: 'vol1', ID: id }, deps) : await unmount({ Name: 'vol1', ID: id }, deps);
      expect(res.Err).toBe('');
      expect(sshfsCalls(deps)).toHaveLength(runs);
      expect(unmountCalls(deps)).toHaveLength(unmounts);
      const rec = await deps.store.get('vol1');
      expect(Object.values(rec?.mounts ?? {}).reduce((a, b) => a + b, 0)).toBe(refs);
      expect(deps.mounts.mounted.has(MP)).toBe(refs > 0);
    }
  });

  it('replaces a stale mount whose sshfs died, keeping the references', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.stale.add(MP);
    expect((await mount({ Name: 'vol1', ID: 'b' }, deps)).Err).toBe('');
    expect(deps.runner.calls.map((c) => [c.program, ...c.args.slice(0, 2)])).toEqual([
      ['sshfs', SSHCMD, MP],
      ['fusermount3', '-u', '-z'],
      ['sshfs', SSHCMD, MP],
    ]);
    expect((await deps.store.get('vol1'))?.mounts).toEqual({ a: 1, b: 1 });
    expect(deps.mounts.stale.has(MP)).toBe(false);
  });

  it('mounts again when references exist but the mount is gone (e.g. after a crash)', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.mounted.delete(MP);
    expect((await mount({ Name: 'vol1', ID: 'b' }, deps)).Err).toBe('');
    expect(sshfsCalls(deps)).toHaveLength(2);
  });

  it('reports ssh\'s own message with a hint, records it, and leaves nothing behind', async () => {
    const deps = await created();
    deps.runner.script = (c) => {
      if (c.program !== 'sshfs') return undefined;
      // ssh writes its own message to the volume's log; sshfs only says the connection went away.
      deps.fs.files.set(LOG, { content: 'alice@files.example.com: Permission denied (publickey).\r\n', mode: 0o600 });
      return { exitCode: 1, stderr: 'read: Connection reset by peer' };
    };
    const res = await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(res.Mountpoint).toBe('');
    expect(res.Err).toMatch(/Permission denied \(publickey\)\..*check the user in sshcmd and the key/);
    const rec = await deps.store.get('vol1');
    expect(rec?.mounts).toEqual({});
    expect(rec?.lastError).toMatch(/Permission denied/);
    expect(deps.fs.dirs.has(MP)).toBe(false);
    expect(deps.runner.calls.map((c) => c.program)).toEqual(['sshfs']);
    // A later successful mount clears the error.
    deps.runner.script = () => undefined;
    expect((await mount({ Name: 'vol1', ID: 'a' }, deps)).Err).toBe('');
    expect((await deps.store.get('vol1'))?.lastError).toBeUndefined();
  });

  it('fails a silent host within the mount timeout', async () => {
    const deps = await created();
    deps.config.mountTimeoutMs = 1_000;
    deps.runner.script = (c) => (c.program === 'sshfs' ? { exitCode: -1, timedOut: true } : undefined);
    const res = await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(res.Err).toMatch(/did not connect to alice@files.example.com:\/srv\/data within 1 s/);
    expect(deps.runner.calls.map((c) => c.program)).toEqual(['sshfs']);
    // The sshfs that never mounted was ended, its ssh with it (one process group).
    expect(deps.mounts.running.size).toBe(0);
  });

  it('fails a Mount whose server accepted the login but does not answer its first request, leaving nothing waiting', async () => {
    const deps = await created();
    deps.runner.script = (c) => {
      if (c.program === 'sshfs') deps.mounts.unanswered.add(MP); // mounted, but SFTP stalls from the first request
      return undefined;
    };
    const res = await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(res.Err).toMatch(/the server accepted the login but its SFTP server does not answer .*within 20 s.*aborted/);
    // Its FUSE connection aborted (whatever waits on it fails now), sshfs's group ended, the mount detached.
    expect(deps.mounts.aborted).toEqual([MP]);
    expect(deps.mounts.running.size).toBe(0);
    expect(deps.mounts.mounted.has(MP)).toBe(false);
    expect(unmountCalls(deps).map((c) => c.args)).toEqual([['-u', '-z', MP]]);
    const rec = await deps.store.get('vol1');
    expect(rec?.mounts).toEqual({});
    expect(rec?.lastError).toMatch(/SFTP server does not answer/);
    expect(rec).not.toHaveProperty('sshfs');
    expect(deps.fs.dirs.has(MP)).toBe(false);
  });

  it('says what ssh said when a mount that never answered had a login problem, not that SFTP is silent', async () => {
    const deps = await created();
    deps.runner.script = (c) => {
      if (c.program !== 'sshfs') return undefined;
      deps.mounts.unanswered.add(MP);
      deps.fs.files.set(LOG, { content: 'alice@files.example.com: Permission denied (publickey).\n', mode: 0o600 });
      return undefined;
    };
    const res = await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(res.Err).toMatch(/Permission denied \(publickey\)/);
    expect(res.Err).not.toMatch(/SFTP server does not answer/);
    expect(deps.mounts.aborted).toEqual([MP]);
  });

  it('fails a Mount whose sshfs exits before its mount appears, with what it said', async () => {
    const deps = await created();
    deps.runner.script = (c) => {
      if (c.program !== 'sshfs') return undefined;
      deps.fs.files.set(LOG, { content: 'remote host has disconnected\nalice@files.example.com:/srv/data: No such file or directory\n', mode: 0o600 });
      return { exitCode: 1 };
    };
    expect((await mount({ Name: 'vol1', ID: 'a' }, deps)).Err).toMatch(/No such file or directory \(the remote path .* does not exist/);
    expect(deps.mounts.mounted.has(MP)).toBe(false);
  });

  it('knows the mount is stale from the sshfs it started (pid and start time), whatever else runs', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect((await deps.store.get('vol1'))?.sshfs).toEqual(SSHFS);
    expect((await get({ Name: 'vol1' }, deps)).Volume?.Status).toMatchObject({ mounted: true });
    deps.mounts.ended(SSHFS.pid); // sshfs crashed; its mount stays in the table
    expect((await get({ Name: 'vol1' }, deps)).Volume?.Status).toMatchObject({ mounted: false, stale: expect.any(String) });
    expect((await mount({ Name: 'vol1', ID: 'b' }, deps)).Err).toBe('');
    expect(sshfsCalls(deps)).toHaveLength(2);
    expect((await deps.store.get('vol1'))?.sshfs).toEqual({ pid: SSHFS.pid + 1, startTicks: SSHFS.startTicks });
  });

  it('tells a passphrase-protected key (ssh in batch mode skips it silently) from a refused login', async () => {
    const header = Buffer.concat([Buffer.from('openssh-key-v1\0'), Buffer.from([0, 0, 0, 10]), Buffer.from('aes256-ctr'), Buffer.alloc(30, 1)]);
    const encrypted = `-----BEGIN OPENSSH PRIVATE KEY-----\n${header.toString('base64')}\n-----END OPENSSH PRIVATE KEY-----`;
    for (const [key, hint] of [
      [encrypted, /protected by a passphrase, which the plugin cannot type/],
      [TEST_KEY, /the server refused the login: check the user in sshcmd/],
    ] as const) {
      const deps = await created({ key });
      deps.runner.script = (c) => {
        if (c.program !== 'sshfs') return undefined;
        deps.fs.files.set(LOG, { content: 'alice@files.example.com: Permission denied (publickey).\n', mode: 0o600 });
        return { exitCode: 1 };
      };
      expect((await mount({ Name: 'vol1', ID: 'a' }, deps)).Err).toMatch(hint);
    }
  });

  it('names the host-side known_hosts of a managed plugin in a host key hint', async () => {
    const deps = makeDeps({ stateDir: '/mnt/state', hostDirs: { '/mnt/state': '/srv/state' } });
    await create({ Name: 'vol1', Opts: { sshcmd: SSHCMD } }, deps);
    deps.runner.script = () => {
      deps.fs.files.set('/mnt/state/logs/vol1.ssh.log', {
        content: 'Offending ED25519 key in /mnt/state/known_hosts:2\nHost key for files.example.com has changed and you have requested strict checking.\n',
        mode: 0o600,
      });
      return { exitCode: 1 };
    };
    expect((await mount({ Name: 'vol1', ID: 'a' }, deps)).Err).toMatch(
      /files.example.com has changed .*run on the Docker host ssh-keygen -R files.example.com -f \/srv\/state\/known_hosts and mount again/,
    );
  });

  it('explains a host key mismatch', async () => {
    const deps = await created();
    deps.runner.script = () => {
      deps.fs.files.set(LOG, { content: '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\nHost key verification failed.\r\n', mode: 0o600 });
      return { exitCode: 1, stderr: 'read: Connection reset by peer' };
    };
    expect((await mount({ Name: 'vol1', ID: 'a' }, deps)).Err).toMatch(/ssh-keygen -R files\.example\.com -f \/state\/known_hosts/);
  });

  it('unmounts lazily when a plain unmount fails', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.runner.script = (c) => (c.program === 'fusermount3' && !c.args.includes('-z') ? { exitCode: 1, stderr: 'Device or resource busy' } : undefined);
    expect((await unmount({ Name: 'vol1', ID: 'a' }, deps)).Err).toBe('');
    expect(unmountCalls(deps).map((c) => c.args)).toEqual([['-u', MP], ['-u', '-z', MP]]);
    expect(deps.mounts.mounted.has(MP)).toBe(false);
    // What held the detached mount (a request hung on a stalled server) must not keep its sshfs and ssh alive.
    expect(deps.mounts.retired).toEqual([SSHFS]);
  });

  it('answers dockerd\'s last Unmount once the release is saved, and detaches right after under the volume\'s lock', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    let finish!: () => void;
    const slow = new Promise<void>((resolve) => (finish = resolve));
    deps.runner.hold = (c) => (c.program === 'fusermount3' ? slow : undefined);
    // The route itself (not the fixture that waits for the detach): its answer must not wait for fusermount3.
    expect(await routeUnmount({ Name: 'vol1', ID: 'a' }, deps)).toEqual({ Err: '' });
    for (let i = 0; i < 20 && unmountCalls(deps).length === 0; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(unmountCalls(deps)).toHaveLength(1); // started right after the answer, and held
    expect(deps.mounts.mounted.has(MP)).toBe(true); // still detaching
    expect((await deps.store.get('vol1'))?.mounts).toEqual({}); // but the release is saved already
    // Requests for the volume meanwhile see the detach done: Get waits for it, a Mount queues behind it.
    const status = get({ Name: 'vol1' }, deps);
    const again = mount({ Name: 'vol1', ID: 'b' }, deps);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sshfsCalls(deps)).toHaveLength(1);
    finish();
    expect((await status).Volume?.Status).toMatchObject({ mounted: false, references: 0 });
    expect((await again).Err).toBe('');
    expect(sshfsCalls(deps)).toHaveLength(2);
    expect(deps.mounts.mounted.has(MP)).toBe(true);
  });

  it('keeps a detach that fails after the answer in Status, and never as an unhandled rejection', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.runner.script = (c) => (c.program === 'fusermount3' ? { exitCode: 1, stderr: 'fusermount3: Device or resource busy' } : undefined);
    expect(await routeUnmount({ Name: 'vol1', ID: 'a' }, deps)).toEqual({ Err: '' });
    const info = await get({ Name: 'vol1' }, deps); // waits for the detach
    expect(info.Volume?.Status).toMatchObject({ references: 0 });
    expect(String(info.Volume?.Status?.lastError)).toMatch(/could not unmount .*Device or resource busy/);
    expect(deps.logs.some((l) => l.includes('unmount after the last container let go failed'))).toBe(true);
  });

  it('hands the sshfs and ssh of every unmounted volume over to be ended should they linger', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    expect(deps.mounts.retired).toEqual([SSHFS]);
    expect(await deps.store.get('vol1')).not.toHaveProperty('sshfs');
  });

  it('refuses to mount a volume that does not exist', async () => {
    const deps = makeDeps();
    expect(await mount({ Name: 'nope', ID: 'a' }, deps)).toEqual({ Mountpoint: '', Err: 'no such volume: nope' });
  });

  it.each([[{ Name: 'vol1' }], [{ Name: 'vol1', ID: 7 }], [{ Name: 'vol1', ID: '' }]])('refuses a Mount without a valid ID: %j', async (req) => {
    const deps = await created();
    expect((await mount(req, deps)).Err).toMatch(/needs an ID/);
    expect(deps.runner.calls).toEqual([]);
  });

  it('serializes concurrent mounts of one volume: one sshfs for many containers', async () => {
    const deps = await created();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => mount({ Name: 'vol1', ID: `id${i}` }, deps)));
    expect(results.every((r) => r.Err === '')).toBe(true);
    expect(sshfsCalls(deps)).toHaveLength(1);
    expect(Object.keys((await deps.store.get('vol1'))?.mounts ?? {})).toHaveLength(20);
  });
});

describe('unmount_delay: keeping an idle volume mounted', () => {
  // The delayed unmount runs under the volume's lock: waiting for that lock waits for it.
  const settle = (d: TestDeps) => d.locks.withLock('vol1', async () => undefined);

  it('keeps the volume mounted after its last container, shows when it unmounts, then unmounts', async () => {
    const deps = await created({ unmount_delay: '30' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect(await unmount({ Name: 'vol1', ID: 'a' }, deps)).toEqual({ Err: '' });
    expect(unmountCalls(deps)).toEqual([]);
    expect(await deps.mounts.state(MP)).toBe('mounted');
    expect(deps.timers.pending.get('vol1')?.ms).toBe(30_000);
    const idle = (await get({ Name: 'vol1' }, deps)).Volume?.Status;
    expect(idle).toMatchObject({ mounted: true, references: 0, unmountsAt: '2026-01-02T03:04:35.000Z' });

    expect(deps.timers.fire('vol1')).toBe(true);
    await settle(deps);
    expect(unmountCalls(deps)).toHaveLength(1);
    expect(await deps.mounts.state(MP)).toBe('absent');
    expect((await deps.store.get('vol1'))?.idleUntil).toBeUndefined();
    expect((await get({ Name: 'vol1' }, deps)).Volume?.Status).not.toHaveProperty('unmountsAt');
  });

  it('lets the next container take the mount back: no new sshfs, and the pending unmount is cancelled', async () => {
    const deps = await created({ unmount_delay: '30' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    expect(await mount({ Name: 'vol1', ID: 'b' }, deps)).toEqual({ Mountpoint: MP, Err: '' });
    expect(sshfsCalls(deps)).toHaveLength(1);
    expect(deps.timers.pending.has('vol1')).toBe(false);
    expect(await deps.store.get('vol1')).toMatchObject({ mounts: { b: 1 } });
    expect((await deps.store.get('vol1'))?.idleUntil).toBeUndefined();
    // A timer that fired anyway (a race with the Mount) finds the volume in use and leaves it alone.
    await unmountIdle('vol1', '2026-01-02T03:04:35.000Z', deps);
    expect(unmountCalls(deps)).toEqual([]);
    await unmount({ Name: 'vol1', ID: 'b' }, deps);
    expect(deps.timers.pending.has('vol1')).toBe(true); // idle again: a new delay starts
  });

  it('unmounts at once on docker volume rm during the delay, then removes the volume', async () => {
    const deps = await created({ unmount_delay: '30' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
    expect(unmountCalls(deps)).toHaveLength(1);
    expect(deps.timers.pending.has('vol1')).toBe(false);
    expect(await deps.store.get('vol1')).toBeUndefined();
    expect(await deps.mounts.state(MP)).toBe('absent');
  });

  it('logs a delayed unmount that fails, and keeps the plugin running (it runs from a timer)', async () => {
    const deps = await created({ unmount_delay: '30' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    deps.runner.script = (call) => (call.program === 'fusermount3' ? { exitCode: 1, stderr: 'Device or resource busy' } : undefined);
    await expect(unmountIdle('vol1', (await deps.store.get('vol1'))?.idleUntil ?? '', deps)).resolves.toBeUndefined();
    expect(deps.logs.join('\n')).toMatch(/error volume vol1: delayed unmount failed: could not unmount \/mnt\/volumes\/vol1: Device or resource busy/);
    expect((await deps.store.get('vol1'))?.lastError).toMatch(/could not unmount/);
  });

  it('unmounts a mount whose sshfs died at once, delay or not', async () => {
    const deps = await created({ unmount_delay: '30' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.stale.add(MP);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    expect(deps.timers.pending.has('vol1')).toBe(false);
    expect(await deps.mounts.state(MP)).toBe('absent');
  });
});

describe('Remove', () => {
  it('drops references never released when nothing holds the mount any more, and detaches it', async () => {
    const deps = await created({ key: TEST_KEY });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await mount({ Name: 'vol1', ID: 'b' }, deps);
    deps.mounts.users.set(MP, 0); // no mount namespace holds it (Unmounts lost in a crash)
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
    expect(await deps.store.get('vol1')).toBeUndefined();
    expect(await deps.mounts.state(MP)).toBe('absent');
    expect(unmountCalls(deps).map((c) => c.args)).toEqual([['-u', MP]]);
    expect(deps.logs.join('\n')).toMatch(/Remove with 2 reference\(s\) never released/);
  });

  it('refuses a volume whose mount a container still holds, whoever sends it, changing nothing', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.users.set(MP, 2); // e.g. a Podman container and a docker cp: another engine's Remove must not cut them
    const before = JSON.stringify(await deps.store.get('vol1'));
    const res = await remove({ Name: 'vol1' }, deps);
    expect(res.Err).toMatch(/volume vol1 is in use: 2 mount\(s\) of it are held elsewhere .*another engine.*Nothing was changed/);
    expect(JSON.stringify(await deps.store.get('vol1'))).toBe(before);
    expect(deps.mounts.mounted.has(MP)).toBe(true);
    expect(unmountCalls(deps)).toEqual([]);
    // Once nothing holds it, the same Remove goes through.
    deps.mounts.users.set(MP, 0);
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
  });

  it('falls back on the references where holders cannot be seen (a managed plugin), and removes an unused volume', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect((await remove({ Name: 'vol1' }, deps)).Err).toMatch(/volume vol1 is in use: the plugin holds 1 mount reference/);
    expect(deps.mounts.mounted.has(MP)).toBe(true);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
  });

  it('drops the references of a mount whose sshfs died (nothing can use it) and removes the volume', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.stale.add(MP);
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
    expect(await deps.store.get('vol1')).toBeUndefined();
  });

  it('detaches lazily when the mount is busy, and never deletes what is inside', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.users.set(MP, 0);
    deps.runner.script = (c) => (c.program === 'fusermount3' && !c.args.includes('-z') ? { exitCode: 1, stderr: 'fusermount3: failed to unmount: Device or resource busy' } : undefined);
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
    expect(unmountCalls(deps).map((c) => c.args)).toEqual([['-u', MP], ['-u', '-z', MP]]);
  });

  it('refuses with the reason when the mount cannot be detached at all, keeping the volume', async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    deps.mounts.users.set(MP, 0);
    deps.runner.script = (c) => (c.program === 'fusermount3' ? { exitCode: 1, stderr: 'fusermount3: no' } : undefined);
    expect((await remove({ Name: 'vol1' }, deps)).Err).toMatch(/could not unmount/);
    expect(await deps.store.get('vol1')).toMatchObject({ mounts: {} });
  });

  it('detaches its own sshfs mount even with no reference (a Mount cut short by a crash)', async () => {
    const deps = await created();
    deps.mounts.mounted.add(MP);
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
    expect(await deps.mounts.state(MP)).toBe('absent');
  });

  it('never deletes files found in an unmounted mountpoint', async () => {
    const deps = await created();
    await deps.fs.ensureDir(MP);
    await deps.fs.writeSecretFile(`${MP}/precious.txt`, 'data');
    expect((await remove({ Name: 'vol1' }, deps)).Err).toMatch(/not empty .* will not delete files/);
    expect(deps.fs.files.has(`${MP}/precious.txt`)).toBe(true);
    expect(await deps.store.get('vol1')).toBeDefined();
  });

  it('removes the record, the empty mountpoint and the key file, running nothing remote', async () => {
    const deps = await created({ key: TEST_KEY });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    const before = deps.runner.calls.length;
    expect(await remove({ Name: 'vol1' }, deps)).toEqual({ Err: '' });
    expect(await deps.store.get('vol1')).toBeUndefined();
    expect([...deps.fs.files.keys()]).toEqual(['/keys/id_ed25519']); // only the operator's own key is left
    expect(deps.runner.calls.length).toBe(before);
  });

  it('answers an unknown volume with no such volume', async () => {
    expect((await remove({ Name: 'ghost' }, makeDeps())).Err).toBe('no such volume: ghost');
  });
});

describe('Get, List, Path, Capabilities, Activate', () => {
  it('Get shows a Status an operator can act on, without secrets', async () => {
    const deps = await created({ password: 'hunter2', port: '2222', uid: '1000' });
    let res = await get({ Name: 'vol1' }, deps);
    expect(res).toEqual({
      Err: '',
      Volume: {
        Name: 'vol1',
        Mountpoint: MP,
        CreatedAt: '2026-01-02T03:04:05.000Z',
        Status: { mounted: false, remote: `${SSHCMD} (port 2222)`, auth: 'password', references: 0, mountIDs: 0, options: { port: '2222', uid: '1000' } },
      },
    });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    res = await get({ Name: 'vol1' }, deps);
    expect(res.Volume?.Status).toMatchObject({ mounted: true, references: 2, mountIDs: 1, mountedAt: '2026-01-02T03:04:05.000Z' });
    expect(JSON.stringify(res)).not.toContain('hunter2');
  });

  it('Get tells from the ssh process whether the link is up, dropped, or was re-established', async () => {
    // sshfs reconnects silently and ssh logs nothing when the server end dies (measured by the fault suite).
    // The ssh is found in the process group of the sshfs the plugin started, never by its command line; one started
    // after the mount appeared is a reconnect (sshfs connects, then mounts).
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    const first = { pid: SSHFS.pid + 1, startTicks: SSHFS.startTicks + 3 };
    const status = async (ssh: ProcessId | undefined) => {
      deps.processes = {
        ...deps.mounts.processes,
        groupMember: async (p: ProcessId) => (p.pid === SSHFS.pid ? ssh : undefined),
        startedAt: (p: ProcessId) => new Date(p === first ? '2026-01-02T03:04:04.500Z' : '2026-01-02T03:09:00.000Z'),
      };
      return (await get({ Name: 'vol1' }, deps)).Volume?.Status;
    };
    expect(await status(first)).toMatchObject({ connection: 'up' });
    expect((await deps.store.get('vol1'))?.mountedTicks).toBe(5_000);
    expect(await status({ pid: 5555, startTicks: 5_001 })).toMatchObject({
      connection: 'reconnected',
      reconnectedAt: '2026-01-02T03:09:00.000Z',
    });
    expect(await status(undefined)).toMatchObject({ connection: expect.stringMatching(/^down: .*reconnects at the next access/) });
    // Not mounted: nothing is said about a connection.
    await unmount({ Name: 'vol1', ID: 'a' }, deps);
    expect(await status(undefined)).not.toHaveProperty('connection');
  });

  it("Get reads ssh's log again whenever it changed, and only then (what it keeps is never stale)", async () => {
    const deps = await created();
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    const reads: string[] = [];
    const readText = deps.fs.readText.bind(deps.fs);
    deps.fs.readText = async (file, maxBytes) => {
      reads.push(file);
      return readText(file, maxBytes);
    };
    const said = async () => (await get({ Name: 'vol1' }, deps)).Volume?.Status?.lastSshMessage;
    expect(await said()).toBeUndefined();
    expect(reads).toEqual([]); // an empty log says nothing: not even opened
    deps.fs.files.set(LOG, { content: 'Connection closed by 10.0.0.1 port 22\n', mode: 0o600 });
    expect(await said()).toBe('Connection closed by 10.0.0.1 port 22');
    expect(await said()).toBe('Connection closed by 10.0.0.1 port 22');
    expect(reads).toEqual([LOG]); // unchanged: answered from memory
    // ssh appends after a reconnect: read again at once.
    deps.fs.files.set(LOG, { content: 'Connection closed by 10.0.0.1 port 22\nTimeout, server files.example.com not responding.\n', mode: 0o600 });
    expect(await said()).toBe('Timeout, server files.example.com not responding.');
    // Rewritten with a message of the same length: still read again.
    deps.fs.files.set(LOG, { content: 'Timeout, server files.example.org not responding.\n', mode: 0o600 });
    expect(await said()).toBe('Timeout, server files.example.org not responding.');
    expect(reads).toHaveLength(3);
    // Emptied (a new Mount rewrites it) or gone: nothing said, nothing kept.
    deps.fs.files.set(LOG, { content: '', mode: 0o600 });
    expect(await said()).toBeUndefined();
    expect(deps.memory.sshLogMessages.size).toBe(0);
  });

  it('Get of an unknown volume says no such volume, and logs it as routine, not as an error', async () => {
    // dockerd asks Get before every Create: an error line here would come with every docker volume create.
    const deps = makeDeps();
    expect(await get({ Name: 'ghost' }, deps)).toEqual({ Volume: null, Err: 'no such volume: ghost' });
    expect(deps.logs).toEqual(['debug Get: no such volume: ghost']);
    expect(await create({ Name: 'ghost', Opts: { sshcmd: SSHCMD } }, deps)).toEqual({ Err: '' });
    expect(deps.logs.filter((l) => l.startsWith('error'))).toEqual([]);
    // A real failure still is an error.
    await create({ Name: 'bad', Opts: { sshcmd: 'nocolon' } }, deps);
    expect(deps.logs.filter((l) => l.startsWith('error'))).toEqual([expect.stringMatching(/^error Create: sshcmd "nocolon" has no ':'/)]);
  });

  it('Get shows the last mount error', async () => {
    const deps = await created();
    deps.runner.script = (c) => {
      if (c.program === 'fusermount3') return undefined;
      deps.fs.files.set(LOG, { content: 'ssh: connect to host files.example.com port 22: Connection refused\n', mode: 0o600 });
      return { exitCode: 1 };
    };
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    expect((await get({ Name: 'vol1' }, deps)).Volume?.Status).toMatchObject({ mounted: false, lastError: expect.stringMatching(/Connection refused.*check the host/) });
  });

  it('List returns every volume with its mountpoint', async () => {
    const deps = await created();
    await create({ Name: 'vol2', Opts: { sshcmd: SSHCMD } }, deps);
    expect(await list({}, deps)).toEqual({
      Err: '',
      Volumes: [
        { Name: 'vol1', Mountpoint: MP },
        { Name: 'vol2', Mountpoint: '/mnt/volumes/vol2' },
      ],
    });
  });

  it('two volumes on one remote path get different mountpoints', async () => {
    const deps = await created();
    await create({ Name: 'vol2', Opts: { sshcmd: SSHCMD } }, deps);
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await mount({ Name: 'vol2', ID: 'b' }, deps);
    expect(sshfsCalls(deps).map((c) => c.args[1])).toEqual([MP, '/mnt/volumes/vol2']);
    await unmount({ Name: 'vol2', ID: 'b' }, deps);
    expect(deps.mounts.mounted.has(MP)).toBe(true);
  });

  it('Path returns the mountpoint', async () => {
    const deps = await created();
    expect(await path({ Name: 'vol1' }, deps)).toEqual({ Mountpoint: MP, Err: '' });
    expect((await path({ Name: 'nope' }, deps)).Err).toBe('no such volume: nope');
  });

  it('Capabilities and Activate', async () => {
    const deps = makeDeps();
    expect(await capabilities({}, deps)).toEqual({ Capabilities: { Scope: 'local' } });
    expect(await activate({}, deps)).toEqual({ Implements: ['VolumeDriver'] });
  });
});
