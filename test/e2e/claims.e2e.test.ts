// What the README tells users, checked against a real dockerd, sshd and FUSE: re-creating a volume, what
// `docker volume inspect` shows, modes, symlinks, error messages, the log, the state directory and the Compose example.
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeSharedLogins, createVolume, describeRun, docker, expectOk, inspectVolume, isSshfsMounted, keyOpts, loadEnv,
  makeRemoteSubdir, pluginRequest, randomId, readRemote, REPO_ROOT, Resources, runWith, startLegacyPlugin,
  tryCreateVolume, uniq, type LegacyPlugin,
} from './harness.js';

const env = loadEnv();
const res = new Resources();
let plugin: LegacyPlugin;

const runWithOk = async (volume: string, script: string): Promise<string> => expectOk(await runWith(volume, script), plugin);

/** The plugin's own error for a failed mount (what `docker run` prints after "VolumeDriver.Mount: "). */
async function mountError(volume: string): Promise<string> {
  const r = await runWith(volume, 'true');
  expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
  expect(await isSshfsMounted(path.join(plugin.mountRoot, volume))).toBe(false);
  const lastError = String((await inspectVolume(volume)).Status?.lastError ?? '');
  expect(r.stderr).toContain(lastError.slice(0, 60));
  return lastError;
}

const hostPort = (): string => `[${env.sshHost}]:${env.sshPort}`;

beforeAll(async () => {
  plugin = await startLegacyPlugin();
});

afterAll(async () => {
  const errors = await res.cleanup();
  if (plugin) await plugin.end();
  expect(errors, 'cleanup errors').toEqual([]);
});

describe('re-creating a volume', () => {
  it('through Docker: exit 0 and the old options stay (dockerd sends no Create for a name it knows); rm then create changes them', async () => {
    const first = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const second = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('recreate'), keyOpts(first));
    const again = await tryCreateVolume(res, plugin, vol, { ...keyOpts(second), read_ahead_kb: '256' });
    expect(again.exitCode, describeRun(again, plugin)).toBe(0);
    const info = await inspectVolume(vol);
    expect(info.Options?.sshcmd).toBe(keyOpts(first).sshcmd);
    expect(info.Options).not.toHaveProperty('read_ahead_kb');
    await runWithOk(vol, 'echo where > /data/where.txt');
    expect(await readRemote(first, 'where.txt')).toBe('where\n');
    expect(existsSync(path.join(second, 'where.txt'))).toBe(false);

    // A Create the plugin does receive (a race, another client) with other options is refused, and says how.
    const direct = await pluginRequest(plugin.socketPath, '/VolumeDriver.Create', { Name: vol, Opts: keyOpts(second) });
    expect(direct.body).toMatch(/already exists with different options; remove it first/);

    // The way to change options: remove, then create.
    expect((await docker(['volume', 'rm', vol])).exitCode).toBe(0);
    await createVolume(res, plugin, vol, keyOpts(second));
    await runWithOk(vol, 'echo moved > /data/where.txt');
    expect(await readRemote(second, 'where.txt')).toBe('moved\n');
  });
});

describe('docker volume inspect', () => {
  it('shows every -o value under Options, the key and the password included; the plugin\'s Status shows neither', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const keyText = readFileSync(env.keyFile, 'utf8');
    const withKey = await createVolume(res, plugin, uniq('shown-key'), { sshcmd: `${env.keyUser}@${env.sshHost}:${remote}`, port: String(env.sshPort), key: keyText });
    const withPassword = await createVolume(res, plugin, uniq('shown-pw'), { sshcmd: `${env.pwUser}@${env.sshHost}:/tmp`, port: String(env.sshPort), password: env.password });
    const keyInfo = await inspectVolume(withKey);
    const pwInfo = await inspectVolume(withPassword);
    expect(keyInfo.Options?.key).toBe(keyText);
    expect(pwInfo.Options?.password).toBe(env.password);
    expect(JSON.stringify(keyInfo.Status)).not.toContain(keyText.split('\n')[1]);
    expect(JSON.stringify(pwInfo.Status)).not.toContain(env.password);
  });
});

describe('modes and symlinks', () => {
  async function remoteTree(): Promise<string> {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    writeFileSync(path.join(remote, 'f'), 'hi\n');
    chmodSync(path.join(remote, 'f'), 0o640);
    mkdirSync(path.join(remote, 'sub'), { mode: 0o750 });
    chmodSync(path.join(remote, 'sub'), 0o750);
    symlinkSync('/etc/hostname', path.join(remote, 'abs'));
    symlinkSync(`../${path.basename(remote)}/f`, path.join(remote, 'dotdot'));
    symlinkSync('f', path.join(remote, 'rel'));
    await execa('chown', ['-hR', `${env.keyUser}:`, remote]);
    return remote;
  }

  it('shows the server\'s modes by default; -o mode=750 shows 750 on every file and directory; -o umask is refused with why', async () => {
    const remote = await remoteTree();
    const plain = await createVolume(res, plugin, uniq('modes'), keyOpts(remote));
    expect(await runWithOk(plain, 'stat -c %a /data/f /data/sub')).toBe('640\n750');
    const moded = await createVolume(res, plugin, uniq('mode750'), { ...keyOpts(remote), mode: '750' });
    expect(await runWithOk(moded, 'stat -c %a /data/f /data/sub')).toBe('750\n750');
    const r = await tryCreateVolume(res, plugin, uniq('umask'), { ...keyOpts(remote), umask: '022' });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/replaces every mode with 0777 minus the mask.*-o mode=755/);
  });

  it('refuses absolute and .. symlinks by default (sshfs contain_symlinks); -o contain_symlinks=false allows them', async () => {
    const remote = await remoteTree();
    const contained = await createVolume(res, plugin, uniq('contained'), keyOpts(remote));
    const script = 'for l in rel abs dotdot; do readlink /data/$l || echo "$l: refused"; done; cat /data/abs 2>&1; true';
    const out = await runWithOk(contained, script);
    expect(out).toContain('f\nabs: refused\ndotdot: refused');
    expect(out).toMatch(/Operation not permitted/);
    const open = await createVolume(res, plugin, uniq('open'), { ...keyOpts(remote), contain_symlinks: 'false' });
    expect(await runWithOk(open, 'for l in rel abs dotdot; do readlink /data/$l; done')).toBe(`f\n/etc/hostname\n../${path.basename(remote)}/f`);
  });
});

describe('error messages', () => {
  it('a changed host key: one line naming the host, with a command that fixes it', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('changed'), keyOpts(remote));
    // Pin another key for the server in the plugin's own known_hosts, as if the server had been reinstalled.
    const other = path.join(plugin.baseDir, `other_host_key_${randomId()}`);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const knownHosts = path.join(plugin.stateDir, 'known_hosts');
    await closeSharedLogins(plugin.stateDir); // a reinstalled server drops the connections made to it before
    writeFileSync(knownHosts, `${hostPort()} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`, { mode: 0o600 });
    const message = await mountError(vol);
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toContain(`Host key for ${hostPort()} has changed`);
    expect(message).not.toMatch(/@@@|NASTY/);
    const fix = /run (ssh-keygen -R \S+ -f \S+) and mount again/.exec(message)?.[1];
    expect(fix, message).toBe(`ssh-keygen -R '${hostPort()}' -f ${knownHosts}`);
    // The command works as printed; the next mount pins the server's real key.
    await execa('sh', ['-c', fix ?? 'false']);
    await runWithOk(vol, 'true');
    rmSync(other, { force: true });
    rmSync(`${other}.pub`, { force: true });
  });

  it('an unknown host with StrictHostKeyChecking=yes is not reported as a changed key', async () => {
    const empty = path.join(env.keysDir, `empty_known_hosts_${randomId()}`);
    writeFileSync(empty, '', { mode: 0o600 });
    const vol = await createVolume(res, plugin, uniq('unknown-host'), { ...keyOpts(env.keyRemoteDir), StrictHostKeyChecking: 'yes', UserKnownHostsFile: empty });
    const message = await mountError(vol);
    expect(message).toContain(`No ED25519 host key is known for ${hostPort()} and you have requested strict checking`);
    expect(message).toContain(`StrictHostKeyChecking=yes connects only to servers already listed in ${empty}`);
    expect(message).not.toMatch(/changed|reinstalled/);
  });

  it('a key exchange the server does not offer points at KexAlgorithms, with the server\'s offer', async () => {
    const vol = await createVolume(res, plugin, uniq('kex'), { ...keyOpts(env.keyRemoteDir), KexAlgorithms: 'diffie-hellman-group1-sha1' });
    const message = await mountError(vol);
    expect(message).toMatch(/no matching key exchange method found\. Their offer: \S*curve25519-sha256/);
    expect(message).toMatch(/with -o KexAlgorithms/);
    expect(message).not.toMatch(/-o Ciphers/);
  });

  it('a mistyped cipher is refused at create with ssh\'s own line', async () => {
    for (const cipher of ['aes999-gcm', '^aes999-gcm']) {
      const vol = uniq('cipher-typo');
      const r = await tryCreateVolume(res, plugin, vol, { ...keyOpts(env.keyRemoteDir), Ciphers: cipher });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`Bad SSH2 cipher spec '${cipher}'`);
      expect((await docker(['volume', 'inspect', vol])).exitCode).not.toBe(0);
    }
  });

  it('a passphrase-protected key is named as such, not as a refused login', async () => {
    const encrypted = path.join(plugin.baseDir, `enc_key_${randomId()}`);
    copyFileSync(env.keyFile, encrypted);
    chmodSync(encrypted, 0o600);
    await execa('ssh-keygen', ['-q', '-p', '-P', '', '-N', `pass-${randomId()}`, '-f', encrypted]);
    const vol = await createVolume(res, plugin, uniq('passphrase'), {
      sshcmd: `${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`,
      port: String(env.sshPort),
      key: readFileSync(encrypted, 'utf8'),
    });
    rmSync(encrypted, { force: true });
    const message = await mountError(vol);
    expect(message).toMatch(/Permission denied.*protected by a passphrase, which the plugin cannot type/);
  });

  it('sshcmd without a user logs in as root, the plugin\'s own user, and the message says so', async () => {
    const vol = await createVolume(res, plugin, uniq('no-user'), {
      sshcmd: `${env.sshHost}:${env.keyRemoteDir}`,
      port: String(env.sshPort),
      key: readFileSync(env.keyFile, 'utf8'),
    });
    const message = await mountError(vol);
    expect(message).toContain(`root@${env.sshHost}: Permission denied`);
    expect(message).toMatch(/sshcmd names no user, so ssh logged in as root/);
  });

  it('ConnectTimeout also bounds the SSH greeting: a port that accepts and stays silent fails with that reason', async () => {
    const sockets = new Set<Socket>();
    const server: Server = createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const vol = await createVolume(res, plugin, uniq('silent'), { ...keyOpts(env.keyRemoteDir), port: String(port), ConnectTimeout: '2' });
      const started = performance.now();
      const message = await mountError(vol);
      console.log(`[claims] mount against a silent port failed after ${((performance.now() - started) / 1000).toFixed(1)} s (ConnectTimeout=2)`);
      expect(message).toMatch(/timed out during banner exchange.*sent no SSH greeting within ConnectTimeout/);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('the log', () => {
  it('docker volume create logs no error for dockerd\'s Get before Create', async () => {
    const vol = await createVolume(res, plugin, uniq('quiet'), keyOpts(env.keyRemoteDir));
    const lines = plugin.logs().split('\n').filter((l) => l.includes(`no such volume: ${vol}`));
    expect(lines.length, plugin.logs().slice(-2000)).toBeGreaterThan(0); // dockerd did ask (DEBUG=1 logs it)
    expect(lines.filter((l) => / error /.test(l))).toEqual([]);
  });
});

describe('the Compose example in the README', () => {
  it('runs with docker-compose: the volume is created with driver_opts, mounted, and shows the uid/gid it sets', async () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const example = /\*\*Compose\*\*[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example, 'README has a **Compose** yaml block').toBeDefined();
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    writeFileSync(path.join(remote, 'from-server.txt'), 'x');
    // Only what differs on this machine changes: plugin name, server, key, image; no network (no bridges here).
    const replacements: [string, string][] = [
      // Host mode: the driver is the socket's name (the README's comment says so; the managed form is tested in managed.e2e).
      ['driver: sshfs:latest   # host mode: sshfs', `driver: ${plugin.name}`],
      ['sshcmd: alice@files.example.com:/srv/data', `sshcmd: ${env.keyUser}@${env.sshHost}:${remote}\n      port: "${env.sshPort}"`],
      ['IdentityFile: /keys/id_ed25519', `IdentityFile: ${env.keyFile}`],
      ['image: busybox', `image: ${env.image}\n    network_mode: none`],
      ['command: ls /data', 'command: ls -n /data'],
    ];
    let yaml = example ?? '';
    for (const [from, to] of replacements) {
      expect(yaml, `the README's Compose example no longer has "${from}"`).toContain(from);
      yaml = yaml.replace(from, to);
    }
    const dir = path.join(plugin.baseDir, uniq('compose'));
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'docker-compose.yml'), yaml);
    const project = uniq('claims').replace(/-/g, '');
    const compose = (args: string[]) =>
      execa('docker-compose', ['-p', project, ...args], {
        cwd: dir,
        env: { DOCKER_HOST: env.dockerHost, COMPOSE_INTERACTIVE_NO_CLI: '1' },
        reject: false,
        timeout: 180_000,
        input: '',
      });
    const networksBefore = (await docker(['network', 'ls', '-q'])).stdout;
    const volume = `${project}_data`;
    res.volume(volume);
    try {
      const up = await compose(['up', '--no-color', '--abort-on-container-exit', '--exit-code-from', 'app']);
      expect(up.exitCode, `${up.stdout}\n${up.stderr}\n${plugin.logs().slice(-2000)}`).toBe(0);
      // ls -n: the file the ssh user owns on the server shows with the uid/gid the example sets.
      expect(up.stdout).toMatch(/-rw\S*\s+1\s+1000\s+1000\s+1\s.*from-server\.txt/);
      const info = await inspectVolume(volume);
      expect(info.Driver).toBe(plugin.name);
      expect(info.Options).toMatchObject({ uid: '1000', gid: '1000', IdentityFile: env.keyFile });
      expect((await docker(['network', 'ls', '-q'])).stdout).toBe(networksBefore);

      // Changed driver_opts on an existing volume: docker-compose itself notices and stops, as the README says.
      writeFileSync(path.join(dir, 'docker-compose.yml'), yaml.replace('uid: "1000"', 'uid: "1001"'));
      const changed = await compose(['up', '--no-color', '--abort-on-container-exit', '--exit-code-from', 'app']);
      expect(changed.exitCode).not.toBe(0);
      expect(changed.stderr).toMatch(/Configuration for volume data specifies "uid" driver_opt 1001, but a volume with the same name uses a different "uid" driver_opt \(1000\)/);
      expect((await inspectVolume(volume)).Options?.uid).toBe('1000');
    } finally {
      const down = await compose(['down', '--volumes']);
      expect(down.exitCode, `${down.stdout}\n${down.stderr}`).toBe(0);
      res.volumes.delete(volume);
    }
    expect((await docker(['volume', 'inspect', volume])).exitCode).not.toBe(0);
  });
});

describe('the state directory', () => {
  it('is made 0700 at start even when it existed with another mode', async () => {
    chmodSync(plugin.stateDir, 0o755);
    await plugin.stop();
    plugin = await startLegacyPlugin(plugin.name);
    expect((statSync(plugin.stateDir).mode & 0o777).toString(8)).toBe('700');
  });
});
