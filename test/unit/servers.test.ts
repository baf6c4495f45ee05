// The servers users point at (issue 20), with the fake runner: IPv6 literals, jump hosts (the ProxyCommand the plugin
// builds, checked by running it through a real /bin/sh), legacy algorithms as an opt-in, certificates, and the hints.
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { explainMountFailure, isRsaKey, type HintContext } from '../../handlers/diagnose.js';
import { UserError } from '../../handlers/errors.js';
import { create, get, mount, remove } from '../../adapter/docker/routes.js';
import { parseOptions, parseProxyJump } from '../../handlers/options.js';
import { buildSshfsArgs } from '../../handlers/lifecycle.js';
import { masterArgs, mountPlan, proxyCommand, type MountPaths } from '../../handlers/ssh-login.js';
import { makeDeps, type TestDeps } from './fixtures.js';

const FC_SEED = Number(process.env.FC_SEED ?? 20261128);
const PATHS: MountPaths = { mountpoint: '/mnt/volumes/v', knownHostsFile: '/state/known_hosts', sshLogFile: '/state/logs/v.ssh.log' };
const KEY_LOGIN = { keyFile: '/keys/id_ed25519', source: 'test' };
const SHARED = { id: 'abc0', controlPath: '/state/cm/abc0', logFile: '/state/cm/abc0.log' };

const sshfsCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'sshfs');
const masterCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'ssh' && c.args.includes('ControlMaster=yes'));
const optionValue = (args: readonly string[], name: string) => args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);

/**
 * What ssh would run for a ProxyCommand: its %-tokens expanded as ssh does, then the words /bin/sh makes of it
 * (the leading `ssh` replaced by printf, so each word prints on a line of its own).
 */
function runAsSsh(command: string, host: string, port: number): string[] {
  const expanded = command.replace(/%(.)/g, (_m, c: string) => (c === '%' ? '%' : c === 'h' ? host : c === 'p' ? String(port) : `<%${c}>`));
  expect(expanded.startsWith('ssh ')).toBe(true);
  const out = execFileSync('/bin/sh', ['-c', `printf '%s\\n' ${expanded.slice('ssh '.length)}`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  return out.split('\n').slice(0, -1);
}

describe('IPv6 literals', () => {
  it('sshfs gets the bracketed form (it strips the brackets), the shared login ssh gets the address bare, with and without port', () => {
    for (const port of [undefined, '2222']) {
      const opts = parseOptions({ sshcmd: 'alice@[::1]:/srv/data', ...(port !== undefined ? { port } : {}) });
      expect(buildSshfsArgs(mountPlan(opts, KEY_LOGIN, PATHS))[0]).toBe('alice@[::1]:/srv/data');
      const args = masterArgs(SHARED, mountPlan(opts, KEY_LOGIN, PATHS), 300);
      expect(args.slice(-2)).toEqual(['--', 'alice@::1']);
      expect(args.includes('-p')).toBe(port !== undefined);
      if (port !== undefined) expect(args[args.indexOf('-p') + 1]).toBe(port);
    }
    const noUser = parseOptions({ sshcmd: '[2001:db8::5]:' });
    expect(masterArgs(SHARED, mountPlan(noUser, KEY_LOGIN, PATHS), 300).at(-1)).toBe('2001:db8::5');
  });

  it('a Mount through a shared login and Status show the address as written', async () => {
    const deps = makeDeps({ sharedConnectionIdleSeconds: 300 });
    expect(await create({ Name: 'v6', Opts: { sshcmd: 'alice@[::1]:/srv', port: '2222' } }, deps)).toEqual({ Err: '' });
    expect((await mount({ Name: 'v6', ID: '1' }, deps)).Err).toBe('');
    expect(masterCalls(deps)[0]?.args.at(-1)).toBe('alice@::1');
    expect(sshfsCalls(deps)[0]?.args[0]).toBe('alice@[::1]:/srv');
    expect((await get({ Name: 'v6' }, deps)).Volume?.Status).toMatchObject({ remote: 'alice@[::1]:/srv (port 2222)' });
  });

  it('the changed-host-key hint names the bracketed known_hosts entry ssh-keygen -R needs', () => {
    const ctx: HintContext = { remote: 'a@[::1]:/x', user: 'a', knownHostsFile: '/state/known_hosts', timeoutSeconds: 20 };
    const message = explainMountFailure(
      { exitCode: 1, stdout: '', stderr: '', timedOut: false },
      'Host key for [::1]:2222 has changed and you have requested strict checking.\nHost key verification failed.',
      ctx,
    );
    expect(message).toContain("ssh-keygen -R '[::1]:2222' -f /state/known_hosts");
  });
});

describe('legacy algorithms, opt-in only', () => {
  it('accepts HostKeyAlgorithms and PubkeyAcceptedAlgorithms with +ssh-rsa and passes them to ssh', () => {
    const opts = parseOptions({ sshcmd: 'a@h:/p', HostKeyAlgorithms: '+ssh-rsa', PubkeyAcceptedAlgorithms: '+ssh-rsa' });
    expect(opts.ssh).toMatchObject({ HostKeyAlgorithms: '+ssh-rsa', PubkeyAcceptedAlgorithms: '+ssh-rsa' });
    const args = buildSshfsArgs(mountPlan(opts, KEY_LOGIN, PATHS));
    expect(args).toContain('HostKeyAlgorithms=+ssh-rsa');
    expect(args).toContain('PubkeyAcceptedAlgorithms=+ssh-rsa');
    for (const bad of ['+ssh-rsa,ssh-dss', '-oProxyCommand=x', '+', 'a b']) {
      expect(() => parseOptions({ sshcmd: 'a@h:/p', HostKeyAlgorithms: bad }), bad).toThrow(UserError);
    }
  });

  it('asks ssh -G about the names at Create and refuses one it does not know', async () => {
    const deps = makeDeps();
    deps.runner.script = (c) => (c.args.includes('HostKeyAlgorithms=+bogus') ? { exitCode: 255, stderr: "command-line line 0: Bad key types '+bogus'." } : undefined);
    const res = await create({ Name: 'v', Opts: { sshcmd: 'a@h:/p', HostKeyAlgorithms: '+bogus' } }, deps);
    expect(res.Err).toContain("ssh refuses -o HostKeyAlgorithms=+bogus: command-line line 0: Bad key types '+bogus'.");
    expect(deps.runner.calls[0]?.args).toEqual(['-G', '-F', '/dev/null', '-o', 'HostKeyAlgorithms=+bogus', 'localhost']);
    expect(await create({ Name: 'v', Opts: { sshcmd: 'a@h:/p', PubkeyAcceptedAlgorithms: '+ssh-rsa' } }, deps)).toEqual({ Err: '' });
  });

  it('a server offering only ssh-rsa host keys: the hint names the exact option and its risk', () => {
    const ctx: HintContext = { remote: 'a@nas:/x', user: 'a', knownHostsFile: '/state/known_hosts', timeoutSeconds: 20 };
    const message = explainMountFailure(
      { exitCode: 1, stdout: '', stderr: '', timedOut: false },
      'Unable to negotiate with 10.0.0.5 port 22: no matching host key type found. Their offer: ssh-rsa',
      ctx,
    );
    expect(message).toContain('add -o HostKeyAlgorithms=+ssh-rsa to the volume');
    expect(message).toMatch(/risk: SHA-1 signatures can be forged/);
    // Another algorithm the plugin has no opt-in for keeps the old answer.
    const other = explainMountFailure({ exitCode: 1, stdout: '', stderr: '', timedOut: false }, 'Unable to negotiate with h port 22: no matching host key type found. Their offer: ssh-foo', ctx);
    expect(other).toContain('the server\'s configuration must change');
  });

  it('a refused login with an RSA key mentions PubkeyAcceptedAlgorithms=+ssh-rsa; with another key it does not', () => {
    const rsaPem = '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n';
    expect(isRsaKey(rsaPem)).toBe(true);
    const base: HintContext = { remote: 'a@nas:/x', user: 'a', knownHostsFile: '/k', timeoutSeconds: 20 };
    const failed = { exitCode: 1, stdout: '', stderr: '', timedOut: false };
    expect(explainMountFailure(failed, 'a@nas: Permission denied (publickey).', { ...base, keyIsRsa: true })).toContain('-o PubkeyAcceptedAlgorithms=+ssh-rsa');
    expect(explainMountFailure(failed, 'a@nas: Permission denied (publickey).', base)).not.toContain('PubkeyAcceptedAlgorithms');
  });

  it('tells an OpenSSH-format RSA key from an ed25519 one', () => {
    const rsa = execFileSync('sh', ['-c', 'd=$(mktemp -d) && ssh-keygen -q -t rsa -b 1024 -N "" -f $d/k && cat $d/k && rm -r $d'], { encoding: 'utf8' });
    const ed = execFileSync('sh', ['-c', 'd=$(mktemp -d) && ssh-keygen -q -t ed25519 -N "" -f $d/k && cat $d/k && rm -r $d'], { encoding: 'utf8' });
    expect(isRsaKey(rsa)).toBe(true);
    expect(isRsaKey(ed)).toBe(false);
  });
});

describe('certificates', () => {
  it('CertificateFile is confined like IdentityFile, checked at Create and at every Mount, and given to ssh by its real path', async () => {
    const deps = makeDeps();
    deps.fs.files.set('/keys/id_ed25519-cert.pub', { content: 'ssh-ed25519-cert-v01@openssh.com AAAA', mode: 0o644 });
    expect(await create({ Name: 'c', Opts: { sshcmd: 'a@h:/p', CertificateFile: 'id_ed25519-cert.pub' } }, deps)).toEqual({ Err: '' });
    expect((await mount({ Name: 'c', ID: '1' }, deps)).Err).toBe('');
    expect(sshfsCalls(deps)[0]?.args).toContain('CertificateFile=/keys/id_ed25519-cert.pub');
    await remove({ Name: 'c' }, deps).catch(() => undefined);

    // Outside the keys directory, in the state, through a symlink out, too large, missing: all refused alike.
    deps.fs.files.set('/etc/cert', { content: 'x', mode: 0o644 });
    deps.fs.links.set('/keys/out-cert', '/etc/cert');
    deps.fs.files.set('/keys/big-cert', { content: 'x'.repeat(65 * 1024), mode: 0o644 });
    for (const file of ['out-cert', 'big-cert', 'missing-cert', '/state/known_hosts']) {
      const res = await create({ Name: 'bad', Opts: { sshcmd: 'a@h:/p', CertificateFile: file } }, deps);
      expect(res.Err, file).toMatch(/CertificateFile .* is not a readable file of at most 64 KiB in the plugin's keys directory|must name a file in the plugin's keys directory/);
    }
    expect(await deps.store.get('bad')).toBeUndefined();

    // Removed after Create: the Mount fails with the same words and runs nothing.
    expect(await create({ Name: 'later', Opts: { sshcmd: 'a@h:/p', CertificateFile: 'id_ed25519-cert.pub' } }, deps)).toEqual({ Err: '' });
    deps.fs.files.delete('/keys/id_ed25519-cert.pub');
    const before = deps.runner.calls.length;
    expect((await mount({ Name: 'later', ID: '1' }, deps)).Err).toMatch(/CertificateFile .* is not a readable file/);
    expect(deps.runner.calls.length).toBe(before);
  });

  it('needs a key login', () => {
    expect(() => parseOptions({ sshcmd: 'a@h:/p', password: 'x', CertificateFile: 'c' })).toThrow(/CertificateFile works only with a key login/);
    expect(() => parseOptions({ sshcmd: 'a@h:/p', password_file: 'pw', CertificateFile: 'c' })).toThrow(/not with password_file/);
  });

  it('the shared login changes with the certificate\'s content', async () => {
    const deps = makeDeps({ sharedConnectionIdleSeconds: 300 });
    deps.fs.files.set('/keys/cert', { content: 'cert one', mode: 0o644 });
    expect(await create({ Name: 'c', Opts: { sshcmd: 'a@h:/p', CertificateFile: 'cert' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'c', ID: '1' }, deps);
    const first = (await deps.store.get('c'))?.sharedConnection;
    expect(masterCalls(deps)[0]?.args).toContain('CertificateFile=/keys/cert');
    deps.fs.files.set('/keys/cert', { content: 'cert two', mode: 0o644 });
    const { unmount } = await import('../../adapter/docker/routes.js');
    await unmount({ Name: 'c', ID: '1' }, deps);
    await mount({ Name: 'c', ID: '2' }, deps);
    expect((await deps.store.get('c'))?.sharedConnection).not.toBe(first);
  });
});

describe('jump hosts', () => {
  it('parses one hop or a short chain, each validated like sshcmd', () => {
    expect(parseProxyJump('bastion')).toEqual([{ host: 'bastion' }]);
    expect(parseProxyJump('alice@bastion.example.com:2222,bob@[::1]:22,10.0.0.1')).toEqual([
      { user: 'alice', host: 'bastion.example.com', port: 2222 },
      { user: 'bob', host: '[::1]', port: 22 },
      { host: '10.0.0.1' },
    ]);
    for (const bad of [
      'a,b,c,d', 'ssh://alice@bastion:22', '-oProxyCommand=sh', 'alice@-bastion', '-l@bastion', 'alice@bastion:0', 'alice@bastion:x',
      'alice@bastion:22:33', 'a b@h', 'h;id', 'h $(id)', "h'", '', ',', 'alice@', 'bastion:',
    ]) {
      expect(() => parseProxyJump(bad), bad).toThrow(UserError);
    }
  });

  it('is refused with password logins (hops log in with the volume\'s key)', () => {
    expect(() => parseOptions({ sshcmd: 'a@h:/p', password: 'x', ProxyJump: 'b' })).toThrow(/ProxyJump works only with a key login/);
  });

  it('builds the hops itself: each hop ssh gets the volume\'s key, known_hosts and host key policy, and -F none', () => {
    const opts = parseOptions({ sshcmd: 'alice@target:/srv', port: '2200', ProxyJump: 'bob@bastion:2222', StrictHostKeyChecking: 'yes' });
    const args = buildSshfsArgs(mountPlan(opts, KEY_LOGIN, PATHS));
    const command = optionValue(args, 'ProxyCommand') ?? '';
    const argv = runAsSsh(command, 'target', 2200);
    expect(argv.slice(0, 8)).toEqual(['-E', '/state/logs/v.ssh.log.hop0', '-F', 'none', '-p', '2222', '-l', 'bob']);
    for (const o of ['IdentityFile=/keys/id_ed25519', 'UserKnownHostsFile=/state/known_hosts', 'GlobalKnownHostsFile=/dev/null', 'StrictHostKeyChecking=yes',
      'IdentitiesOnly=yes', 'IdentityAgent=none', 'BatchMode=yes', 'UpdateHostKeys=no']) {
      expect(argv, o).toContain(o);
    }
    expect(argv.slice(-4)).toEqual(['-W', '[target]:2200', '--', 'bastion']);
    expect(argv.some((a) => a.startsWith('ProxyCommand='))).toBe(false);
  });

  it('chains hops: each hop\'s ssh runs the hops before it, %-tokens expanded at the right level', () => {
    const opts = parseOptions({ sshcmd: 'alice@[::1]:/srv', ProxyJump: 'u1@h1:2201,u2@[fe80::2]:2202,h3' });
    const command = proxyCommand(mountPlan(opts, KEY_LOGIN, PATHS), '/state/cm/x.log') ?? '';
    // Run by the target's ssh: connects to h3, which forwards to the target.
    const third = runAsSsh(command, '::1', 22);
    expect(third.slice(-4)).toEqual(['-W', '[::1]:22', '--', 'h3']);
    expect(third.slice(0, 4)).toEqual(['-E', '/state/cm/x.log.hop2', '-F', 'none']);
    // h3's own ssh runs its ProxyCommand with %h = h3 (port 22).
    const second = runAsSsh(optionValue(third, 'ProxyCommand') ?? '', 'h3', 22);
    expect(second.slice(-4)).toEqual(['-W', '[h3]:22', '--', 'fe80::2']);
    expect(second.slice(0, 8)).toEqual(['-E', '/state/cm/x.log.hop1', '-F', 'none', '-p', '2202', '-l', 'u2']);
    const first = runAsSsh(optionValue(second, 'ProxyCommand') ?? '', 'fe80::2', 2202);
    expect(first.slice(-4)).toEqual(['-W', '[fe80::2]:2202', '--', 'h1']);
    expect(first.slice(0, 8)).toEqual(['-E', '/state/cm/x.log.hop0', '-F', 'none', '-p', '2201', '-l', 'u1']);
    expect(first.some((a) => a.startsWith('ProxyCommand='))).toBe(false);
  });

  it('no ProxyJump value, however written, becomes shell syntax: the shell gives back exactly the validated hosts', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 3 }), (parts) => {
        const value = parts.join(',');
        let opts;
        try {
          opts = parseOptions({ sshcmd: 'a@t:/p', ProxyJump: value });
        } catch (error) {
          expect(error).toBeInstanceOf(UserError);
          return;
        }
        const hops = opts.jumpHosts ?? [];
        const argv = runAsSsh(proxyCommand(mountPlan(opts, KEY_LOGIN, PATHS), '/l') ?? '', 't', 22);
        expect(argv.at(-1)).toBe(hops.at(-1)?.host.replace(/^\[(.*)\]$/, '$1'));
      }),
      { numRuns: 150, seed: FC_SEED },
    );
  });

  it('the shared login\'s digest includes the hops, and the master runs the chain with logs of its own', async () => {
    const deps = makeDeps({ sharedConnectionIdleSeconds: 300 });
    expect(await create({ Name: 'a', Opts: { sshcmd: 'alice@t:/p', ProxyJump: 'b1' } }, deps)).toEqual({ Err: '' });
    expect(await create({ Name: 'b', Opts: { sshcmd: 'alice@t:/p', ProxyJump: 'b2' } }, deps)).toEqual({ Err: '' });
    expect(await create({ Name: 'c', Opts: { sshcmd: 'alice@t:/p' } }, deps)).toEqual({ Err: '' });
    for (const name of ['a', 'b', 'c']) expect((await mount({ Name: name, ID: '1' }, deps)).Err).toBe('');
    const ids = await Promise.all(['a', 'b', 'c'].map(async (n) => (await deps.store.get(n))?.sharedConnection?.slice(0, 20)));
    expect(new Set(ids).size).toBe(3);
    const master = masterCalls(deps)[0]?.args ?? [];
    expect(optionValue(master, 'ProxyCommand')).toContain(`-E '/state/cm/${ids[0]}0.log.hop0'`);
  });

  it('a failure at a jump host names that hop; one that cannot forward says so', () => {
    const failed = { exitCode: 255, stdout: '', stderr: '', timedOut: false };
    const ctx: HintContext = {
      remote: 'alice@t:/p', user: 'alice', knownHostsFile: '/state/known_hosts', timeoutSeconds: 20,
      jumpHosts: ['bob@b1:2222', 'carol@b2'],
      jumpHostLogs: ['', 'carol@b2: Permission denied (publickey).\n'],
    };
    const target = 'kex_exchange_identification: Connection closed by remote host\nConnection closed by UNKNOWN port 65535';
    expect(explainMountFailure(failed, target, ctx)).toBe(
      'mounting alice@t:/p failed at jump host carol@b2: carol@b2: Permission denied (publickey). (the server refused the login: ' +
        'check the user in sshcmd and the key (-o IdentityFile / -o key) or -o password)',
    );
    const forward = explainMountFailure(failed, target, { ...ctx, jumpHostLogs: ['channel 0: open failed: administratively prohibited: open failed\nstdio forwarding failed', ''] });
    expect(forward).toBe(
      'mounting alice@t:/p failed: jump host bob@b1:2222 could not connect on to carol@b2: channel 0: open failed: administratively prohibited: ' +
        "open failed (check carol@b2's host and port, and that bob@b1:2222 allows TCP forwarding to it)",
    );
    // Nothing from the hops: the server's own words, as without jump hosts.
    expect(explainMountFailure(failed, 'alice@t: Permission denied (publickey).', { ...ctx, jumpHostLogs: ['', ''] })).toMatch(/^mounting alice@t:\/p failed: alice@t: Permission denied/);
  });

  it('a Mount that fails at a hop reports it, and the hop logs go with the volume', async () => {
    const deps = makeDeps();
    expect(await create({ Name: 'j', Opts: { sshcmd: 'alice@t:/p', ProxyJump: 'bob@b1' } }, deps)).toEqual({ Err: '' });
    deps.runner.script = (c) => {
      if (c.program !== 'sshfs') return undefined;
      void deps.fs.writeSecretFile('/state/logs/j.ssh.log.hop0', 'ssh: connect to host b1 port 22: Connection refused\n');
      return { exitCode: 1, stderr: 'read: Connection reset by peer' };
    };
    expect((await mount({ Name: 'j', ID: '1' }, deps)).Err).toMatch(/failed at jump host bob@b1: ssh: connect to host b1 port 22: Connection refused \(nothing listens/);
    expect((await remove({ Name: 'j' }, deps)).Err).toBe('');
    expect(deps.fs.files.has('/state/logs/j.ssh.log.hop0')).toBe(false);
  });
});

describe('cache and dir_cache', () => {
  it('are one setting: giving both with different values is refused, the same value is fine', () => {
    expect(() => parseOptions({ sshcmd: 'a@h:/p', cache: 'yes', dir_cache: 'no' })).toThrow(
      /cache and dir_cache are two names for one sshfs setting, and they disagree \(cache=yes, dir_cache=no\): give only one of them/,
    );
    expect(parseOptions({ sshcmd: 'a@h:/p', cache: 'no', dir_cache: 'NO' }).sshfs).toMatchObject({ cache: 'no', dir_cache: 'no' });
  });
});
