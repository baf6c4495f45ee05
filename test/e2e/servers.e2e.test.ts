// The server matrix: the plugin against servers set up the way real ones are, each a real server of that shape
// (test/e2e/test-servers.ts): an sshd on ::1, a chrooted SFTP-only account, a Dropbear server, a bastion for
// ProxyJump, an sshd offering only an ssh-rsa host key, a user CA, plus unicode names, a directory of 3,000 files and
// a path with a space on the usual test sshd. Everything goes through the docker CLI and a container.
import { chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createVolume, describeRun, docker, expectOk, inspectVolume, keyOpts, loadEnv, makeRemoteSubdir, randomId, readRemote,
  removeVolume, Resources, runWith, sshfsMountsUnder, startContainer, startLegacyPlugin, tryCreateVolume, uniq, type LegacyPlugin,
} from './harness.js';
import { ids, knownHostsLine, rootDir, serversDir, startDropbear, startSshd, type TestServer } from './test-servers.js';

const env = loadEnv();
const res = new Resources();
const servers: TestServer[] = [];
const keysFiles: string[] = [];
let plugin: LegacyPlugin;
const publicKey = readFileSync(`${env.keyFile}.pub`, 'utf8');
const authorized = { [env.keyUser]: publicKey };

const ok = async (volume: string, script: string): Promise<string> => expectOk(await runWith(volume, script), plugin);
const pluginKnownHosts = () => readFileSync(path.join(plugin.stateDir, 'known_hosts'), 'utf8');

/** A Create expected to be refused: not left tracked (dockerd takes seconds to say a volume it never had is gone). */
async function refusedCreate(name: string, opts: Record<string, string>) {
  const r = await tryCreateVolume(res, plugin, name, opts);
  if (r.exitCode !== 0) res.volumes.delete(name);
  return r;
}

async function server(start: Promise<TestServer>): Promise<TestServer> {
  const s = await start;
  servers.push(s);
  return s;
}

/** A volume on SERVER as the key user, with the key in the keys directory. */
function optsFor(s: TestServer, remotePath: string, extra: Record<string, string> = {}): Record<string, string> {
  const host = s.host.includes(':') ? `[${s.host}]` : s.host;
  return { sshcmd: `${env.keyUser}@${host}:${remotePath}`, port: String(s.port), IdentityFile: env.keyFile, ...extra };
}

beforeAll(async () => {
  plugin = await startLegacyPlugin();
});

afterAll(async () => {
  const errors = await res.cleanup();
  const leftover = plugin ? await sshfsMountsUnder(plugin.mountRoot) : [];
  if (plugin) await plugin.end();
  for (const s of servers) await s.stop();
  for (const f of keysFiles) rmSync(f, { force: true });
  expect(errors, 'cleanup errors').toEqual([]);
  expect(leftover.map((m) => m.mountpoint)).toEqual([]);
});

describe('IPv6', () => {
  it('mounts through an sshd listening on ::1, written [::1] in sshcmd, over a shared login', async () => {
    const lo = await execa('ip', ['-6', 'addr', 'show', 'lo'], { reject: false });
    expect(lo.stdout, 'this test needs ::1 on the loopback interface').toContain('inet6 ::1/128');
    const sshd = await server(startSshd(env.dir, `v6-${randomId()}`, { listen: '::1', authorizedKeys: authorized }));
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'v6');
    const volume = await createVolume(res, plugin, uniq('v6'), optsFor(sshd, dir));
    await ok(volume, 'echo over-ipv6 > /data/v6.txt');
    expect(await readRemote(dir, 'v6.txt')).toBe('over-ipv6\n');
    const status = (await inspectVolume(volume)).Status ?? {};
    expect(status.remote).toBe(`${env.keyUser}@[::1]:${dir} (port ${sshd.port})`);
    // The host key was pinned under ssh's own name for a non-default port.
    expect(pluginKnownHosts()).toContain(knownHostsLine(sshd));
    // A second cold mount goes over the same shared login (the first one's master).
    await ok(volume, 'cat /data/v6.txt');
    const logins = sshd.log().split('\n').filter((l) => l.includes(`Accepted publickey for ${env.keyUser}`)).length;
    expect(logins).toBe(1);
    await removeVolume(res, volume, plugin);
  });

  it('mounts [::1] without a port option (ssh\'s port 22), pinned as ::1 in known_hosts', async () => {
    const sshd = await server(startSshd(env.dir, `v6-22-${randomId()}`, { listen: '::1', port: 22, authorizedKeys: authorized }));
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'v6p22');
    const volume = await createVolume(res, plugin, uniq('v6p22'), { sshcmd: `${env.keyUser}@[::1]:${dir}`, IdentityFile: env.keyFile });
    await ok(volume, 'echo port-22 > /data/p.txt');
    expect(await readRemote(dir, 'p.txt')).toBe('port-22\n');
    expect(pluginKnownHosts().split('\n')).toContain(`::1 ${sshd.hostKey}`);
    expect((await inspectVolume(volume)).Status?.remote).toBe(`${env.keyUser}@[::1]:${dir}`);
    await removeVolume(res, volume, plugin);
    await sshd.stop();
  });
});

describe('legacy algorithms', () => {
  it('an sshd offering only an ssh-rsa host key: refused with the exact option to add, mounts with it', async () => {
    const sshd = await server(startSshd(env.dir, `rsa-${randomId()}`, { hostKeyType: 'rsa', authorizedKeys: authorized, config: ['HostKeyAlgorithms ssh-rsa'] }));
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'rsa');
    const plain = await createVolume(res, plugin, uniq('rsa-plain'), optsFor(sshd, dir));
    const failed = await runWith(plain, 'true');
    expect(failed.exitCode, describeRun(failed, plugin)).not.toBe(0);
    expect(failed.stderr).toContain('no matching host key type found. Their offer: ssh-rsa');
    expect(failed.stderr).toContain('add -o HostKeyAlgorithms=+ssh-rsa to the volume');
    expect(failed.stderr).toMatch(/risk: SHA-1 signatures can be forged/);
    const optIn = await createVolume(res, plugin, uniq('rsa-optin'), optsFor(sshd, dir, { HostKeyAlgorithms: '+ssh-rsa' }));
    await ok(optIn, 'echo legacy > /data/legacy.txt');
    expect(await readRemote(dir, 'legacy.txt')).toBe('legacy\n');
    expect(pluginKnownHosts()).toContain(`[127.0.0.1]:${sshd.port} ssh-rsa `);
    // A name ssh does not know is refused at Create, with ssh's words.
    const bad = await refusedCreate(uniq('rsa-bad'), optsFor(sshd, dir, { PubkeyAcceptedAlgorithms: '+ssh-bogus' }));
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/ssh refuses -o PubkeyAcceptedAlgorithms=\+ssh-bogus: .*Bad key types/);
  });
});

describe('certificates', () => {
  it('a key signed by a user CA the sshd trusts logs in with CertificateFile, and not without it', async () => {
    const id = randomId();
    const caDir = rootDir(path.join(serversDir(env.dir), `ca-${id}-keys`));
    const ca = path.join(caDir, 'user_ca');
    const key = path.join(env.keysDir, `cert-user-${id}`);
    const cert = path.join(env.keysDir, `cert-user-${id}.crt`);
    keysFiles.push(key, `${key}.pub`, `${key}-cert.pub`, cert);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await execa('ssh-keygen', ['-q', '-s', ca, '-I', `sshfs-e2e-${id}`, '-n', env.keyUser, '-V', '-5m:+1h', `${key}.pub`]);
    // ssh would also load <key>-cert.pub by itself: the certificate gets a name of its own, so only the option finds it.
    writeFileSync(cert, readFileSync(`${key}-cert.pub`));
    rmSync(`${key}-cert.pub`);
    // The sshd knows no key of the user: only the CA.
    const sshd = await server(startSshd(env.dir, `ca-${id}`, { config: [`TrustedUserCAKeys ${ca}.pub`] }));
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'cert');
    const withCert = await createVolume(res, plugin, uniq('cert'), optsFor(sshd, dir, { IdentityFile: path.basename(key), CertificateFile: path.basename(cert) }));
    await ok(withCert, 'echo signed > /data/cert.txt');
    expect(await readRemote(dir, 'cert.txt')).toBe('signed\n');
    expect(sshd.log()).toMatch(/Accepted publickey for \S+ .*ED25519-CERT/);
    const without = await createVolume(res, plugin, uniq('nocert'), optsFor(sshd, dir, { IdentityFile: path.basename(key) }));
    const refused = await runWith(without, 'true');
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('Permission denied (publickey)');
    // Outside the keys directory: refused at Create.
    const outside = await refusedCreate(uniq('cert-out'), optsFor(sshd, dir, { IdentityFile: path.basename(key), CertificateFile: `${ca}.pub` }));
    expect(outside.exitCode).not.toBe(0);
    expect(outside.stderr).toMatch(/CertificateFile .* keys directory/);
  });
});

describe('jump hosts', () => {
  let bastion: TestServer;

  beforeAll(async () => {
    // Forwards only to the test sshd and to itself (for a chain of two); no shell.
    bastion = await server(startSshd(env.dir, `bastion-${randomId()}`, {
      authorizedKeys: authorized,
      config: (port) => ['AllowTcpForwarding local', 'PermitTTY no', 'ForceCommand /bin/false', `PermitOpen 127.0.0.1:${env.sshPort} 127.0.0.1:${port}`],
    }));
  });

  it('mounts through a bastion (one hop and a chain of two), pinning the bastion\'s host key like the server\'s', async () => {
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'jump');
    const hop = `${env.keyUser}@127.0.0.1:${bastion.port}`;
    const one = await createVolume(res, plugin, uniq('jump'), { ...keyOpts(dir), ProxyJump: hop });
    await ok(one, 'echo via-bastion > /data/jump.txt');
    expect(await readRemote(dir, 'jump.txt')).toBe('via-bastion\n');
    expect(bastion.log()).toContain(`Accepted publickey for ${env.keyUser}`);
    expect(pluginKnownHosts()).toContain(knownHostsLine(bastion));
    const two = await createVolume(res, plugin, uniq('jump2'), { ...keyOpts(dir), ProxyJump: `${hop},${hop}` });
    expect(await ok(two, 'cat /data/jump.txt')).toBe('via-bastion');
    expect(bastion.log().split('\n').filter((l) => l.includes(`Accepted publickey for ${env.keyUser}`)).length).toBeGreaterThanOrEqual(3);
    // Without a shared login (max_conns > 1): sshfs's own ssh gets the chain, through FUSE's option parsing.
    const bastionLogins = () => bastion.log().split('\n').filter((l) => l.includes(`Accepted publickey for ${env.keyUser}`)).length;
    const before = bastionLogins();
    const alone = await createVolume(res, plugin, uniq('jump-alone'), { ...keyOpts(dir), ProxyJump: `${hop},${hop}`, max_conns: '2' });
    expect(await ok(alone, 'cat /data/jump.txt')).toBe('via-bastion');
    expect(bastionLogins() - before).toBeGreaterThanOrEqual(2); // both hops, for each of sshfs's connections
    expect((await inspectVolume(alone)).Status?.sharedConnection).toBeUndefined();
  });

  it('a hop that refuses the login, or refuses to forward, is named in the error', async () => {
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'jumpfail');
    const wrongUser = await createVolume(res, plugin, uniq('jump-user'), { ...keyOpts(dir), ProxyJump: `${env.pwUser}@127.0.0.1:${bastion.port}` });
    const r1 = await runWith(wrongUser, 'true');
    expect(r1.exitCode).not.toBe(0);
    expect(r1.stderr).toContain(`failed at jump host ${env.pwUser}@127.0.0.1:${bastion.port}: ${env.pwUser}@127.0.0.1: Permission denied`);
    // The same through sshfs's own ssh (no shared login): the hop's log is read there too.
    const alone = await createVolume(res, plugin, uniq('jump-user-alone'), { ...keyOpts(dir), ProxyJump: `${env.pwUser}@127.0.0.1:${bastion.port}`, max_conns: '2' });
    const r3 = await runWith(alone, 'true');
    expect(r3.exitCode).not.toBe(0);
    expect(r3.stderr).toContain(`failed at jump host ${env.pwUser}@127.0.0.1:${bastion.port}: ${env.pwUser}@127.0.0.1: Permission denied`);
    const noForward = await server(startSshd(env.dir, `noforward-${randomId()}`, { authorizedKeys: authorized, config: ['AllowTcpForwarding no'] }));
    const blocked = await createVolume(res, plugin, uniq('jump-blocked'), { ...keyOpts(dir), ProxyJump: `${env.keyUser}@127.0.0.1:${noForward.port}` });
    const r2 = await runWith(blocked, 'true');
    expect(r2.exitCode).not.toBe(0);
    expect(r2.stderr).toContain(`jump host ${env.keyUser}@127.0.0.1:${noForward.port} could not connect on to the server of`);
    expect(r2.stderr).toContain('administratively prohibited');
  });

  it('refuses a hop that smuggles an option or a command, at Create', async () => {
    for (const hop of ['-oProxyCommand=id', 'ssh://a@b', 'a@b;id', 'a@$(id)']) {
      const r = await refusedCreate(uniq('jump-bad'), { ...keyOpts(env.keyRemoteDir), ProxyJump: hop });
      expect(r.exitCode, hop).not.toBe(0);
      expect(r.stderr, hop).toMatch(/ProxyJump (user|host|port)/);
    }
  });
});

describe('a chrooted SFTP-only account', () => {
  let sshd: TestServer;
  let upload: string;

  beforeAll(async () => {
    const id = randomId();
    const root = rootDir(path.join(serversDir(env.dir), `chroot-${id}-root`));
    upload = path.join(root, 'upload');
    const { uid, gid } = await ids(env.keyUser);
    for (const d of [upload, path.join(upload, 'sub'), path.join(upload, 'abs')]) {
      mkdirSync(d, { mode: 0o755 });
      chownSync(d, uid, gid);
    }
    sshd = await server(startSshd(env.dir, `chroot-${id}`, {
      authorizedKeys: authorized,
      config: ['AllowTcpForwarding no', `Match User ${env.keyUser}`, `  ChrootDirectory ${root}`, '  ForceCommand internal-sftp -d /upload'],
    }));
  });

  it.each([
    ['absolute', '/upload/abs', 'abs'],
    ['empty (the start directory)', '', '.'],
    ['relative', 'sub', 'sub'],
  ])('%s path: cold and warm', async (_label, remote, where) => {
    const volume = await createVolume(res, plugin, uniq('chroot'), optsFor(sshd, remote));
    await ok(volume, 'echo cold > /data/cold.txt');
    expect(readFileSync(path.join(upload, where, 'cold.txt'), 'utf8')).toBe('cold\n');
    const holder = await startContainer(res, volume);
    expect(await ok(volume, 'cat /data/cold.txt && echo warm > /data/warm.txt')).toBe('cold');
    expect(readFileSync(path.join(upload, where, 'warm.txt'), 'utf8')).toBe('warm\n');
    expectOk(await docker(['rm', '-f', holder]), plugin);
    res.containers.delete(holder);
  });
});

describe('Dropbear', () => {
  it('mounts from a Dropbear server', async () => {
    const dropbear = await server(startDropbear(env.dir, `dropbear-${randomId()}`, env.keyUser, publicKey));
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'dropbear');
    const volume = await createVolume(res, plugin, uniq('dropbear'), optsFor(dropbear, dir));
    await ok(volume, 'echo from-dropbear > /data/d.txt && ls -l /data/d.txt');
    expect(await readRemote(dir, 'd.txt')).toBe('from-dropbear\n');
    expect(pluginKnownHosts()).toContain(knownHostsLine(dropbear));
    expect(await ok(volume, 'cat /data/d.txt')).toBe('from-dropbear');
  });
});

describe('names and sizes', () => {
  it('unicode file names both ways, a directory of 3,000 files, and a remote path with a space', async () => {
    const dir = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'names');
    const spaced = path.join(dir, 'with space');
    const big = path.join(spaced, 'big');
    const { uid, gid } = await ids(env.keyUser);
    mkdirSync(big, { recursive: true });
    for (let i = 0; i < 3000; i++) writeFileSync(path.join(big, `f${i}`), '');
    writeFileSync(path.join(spaced, 'ünïcødé-名前.txt'), 'server side\n');
    await execa('chown', ['-R', `${uid}:${gid}`, spaced]);
    const volume = await createVolume(res, plugin, uniq('names'), { ...keyOpts(spaced) });
    expect(await ok(volume, 'ls /data/big | wc -l')).toBe('3000');
    expect(await ok(volume, 'cat "/data/ünïcødé-名前.txt"')).toBe('server side');
    await ok(volume, 'echo container side > "/data/héllo wörld 中文 🙂.txt"');
    expect(readFileSync(path.join(spaced, 'héllo wörld 中文 🙂.txt'), 'utf8')).toBe('container side\n');
    expect((await inspectVolume(volume)).Status?.remote).toBe(`${env.keyUser}@${env.sshHost}:${spaced} (port ${env.sshPort})`);
  });
});

describe('README rows checked against the real sshfs', () => {
  it('transform_symlinks works with containment on: absolute links inside the volume become relative, others stay absolute and refused', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'links');
    writeFileSync(path.join(remote, 'f'), 'inside\n');
    await execa('ln', ['-s', path.join(remote, 'f'), path.join(remote, 'abs-inside')]);
    await execa('ln', ['-s', '/etc/hostname', path.join(remote, 'abs-outside')]);
    await execa('chown', ['-h', `${env.keyUser}:`, path.join(remote, 'f'), path.join(remote, 'abs-inside'), path.join(remote, 'abs-outside')]);
    const volume = await createVolume(res, plugin, uniq('transform'), { ...keyOpts(remote), transform_symlinks: '' });
    const out = await ok(volume, 'readlink /data/abs-inside; cat /data/abs-inside; readlink /data/abs-outside || echo "outside: refused"; true');
    expect(out).toBe('f\ninside\noutside: refused');
    const open = await createVolume(res, plugin, uniq('transform-open'), { ...keyOpts(remote), transform_symlinks: '', contain_symlinks: 'false' });
    expect(await ok(open, 'readlink /data/abs-inside; readlink /data/abs-outside')).toBe('f\n/etc/hostname');
  });

  it('cache and dir_cache, one setting, given with different values: refused at Create with what to do', async () => {
    const r = await refusedCreate(uniq('cache'), { ...keyOpts(env.keyRemoteDir), cache: 'yes', dir_cache: 'no' });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('cache and dir_cache are two names for one sshfs setting, and they disagree (cache=yes, dir_cache=no): give only one of them');
  });
});
