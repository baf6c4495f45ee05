// The plugin as operators install it: a managed (v2) Docker plugin built offline by scripts/plugin.sh (the same
// command as `npm run plugin:install`), created and enabled in the isolated dockerd under a unique name, then used
// through the docker CLI only: key auth through the settable `keys` mount, password auth, data checked from a second
// container and on the sshd side, inspect, DEBUG via `docker plugin set`, disable/enable with volumes present, and a
// teardown that must leave no mount and no process behind. Also: `plugin.sh push` explains a registry's refusals
// (a fake registry on 127.0.0.1 answers the way real ones refuse).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeSharedLogins,
  REPO_ROOT,
  Resources,
  docker,
  dockerOk,
  inspectVolume,
  loadEnv,
  makeRemoteSubdir,
  randomId,
  readAheadKbAt,
  readMounts,
  readRemote,
  sshfsMountsUnder,
  waitFor,
} from './harness.js';
import { createKeyVolume, freshPluginDirs, pluginDirs, pluginScript, removeManagedPlugin } from './managed-plugin.js';

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may contain spaces and parentheses; it ends at the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      out.push({ pid: Number(entry), ppid: Number(fields[1]), comm, cmdline });
    } catch {
      // the process exited meanwhile
    }
  }
  return out;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('managed plugin (docker plugin create/enable from the offline rootfs)', () => {
  const env = loadEnv();
  const dirs = pluginDirs('managed', 'sshfs-managed');
  const { name, ref, baseDir, pluginDir, stateSource, keysSource } = dirs;
  const res = new Resources();
  const keyVol = res.volume(`mk-${randomId()}`);
  const pwVol = res.volume(`mp-${randomId()}`);
  let pluginId = '';
  let keyRemote = '';
  let pwRemote = '';
  let binarySum = '';
  let installMessage = '';
  const text = `managed plugin, key auth: ${randomId(8)}\nsecond line, ümlaut and tab\t.\n`;
  const pwText = `managed plugin, password auth: ${randomId(8)}\n`;

  const pluginLogLines = (): string[] =>
    readFileSync(path.join(env.dir, 'dockerd.log'), 'utf8')
      .split('\n')
      .filter((line) => pluginId !== '' && line.includes(`plugin=${pluginId}`));

  beforeAll(async () => {
    freshPluginDirs(dirs);
    // `npm run plugin:install`, offline, under a unique name, with the key directory as the keys mount's source.
    const r = await pluginScript('install', {
      PLUGIN_NAME: name,
      PLUGIN_DIR: pluginDir,
      PLUGIN_BUILDER: 'offline',
      PLUGIN_SKIP_APP_BUILD: '1', // the global setup has just run `npm run build`
      PLUGIN_STATE_SOURCE: stateSource,
      PLUGIN_KEYS_SOURCE: keysSource,
    });
    if (r.exitCode !== 0) throw new Error(`plugin.sh install failed (${r.exitCode}):\n${r.stderr}\n${r.stdout}`);
    installMessage = r.stderr;
    pluginId = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', ref])).trim();
    keyRemote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'managed');
    pwRemote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser, 'managed');
  }, 600_000);

  afterAll(async () => {
    const errors = await res.cleanup();
    await removeManagedPlugin(ref);
    if ((await sshfsMountsUnder(baseDir)).length === 0) rmSync(baseDir, { recursive: true, force: true });
    if (errors.length > 0) console.warn(`[managed] cleanup: ${errors.join('; ')}`);
  }, 300_000);

  it('is installed, enabled, with the config and settings it was given', async () => {
    const ls = await dockerOk(['plugin', 'ls', '--format', '{{.Name}} {{.Enabled}}']);
    expect(ls.split('\n')).toContain(`${ref} true`);
    const [plugin] = JSON.parse(await dockerOk(['plugin', 'inspect', ref])) as {
      Config: {
        Entrypoint: string[];
        PropagatedMount: string;
        Interface: { Socket: string; Types: string[] };
        Network: { Type: string };
        Linux: { Capabilities: string[]; Devices: { Path: string }[] };
      };
      Settings: { Env: string[]; Mounts: { Name: string; Source: string; Destination: string; Options: string[] }[] };
    }[];
    expect(plugin).toBeDefined();
    const { Config, Settings } = plugin!;
    expect(Config.Entrypoint.slice(0, 2)).toEqual(['/usr/bin/tini', '--']);
    expect(Config.PropagatedMount).toBe('/mnt/volumes');
    expect(Config.Interface.Socket).toBe('sshfs.sock');
    expect(Config.Interface.Types).toEqual(['docker.volumedriver/1.0']);
    expect(Config.Network.Type).toBe('host');
    expect(Config.Linux.Capabilities).toContain('CAP_SYS_ADMIN');
    expect(Config.Linux.Devices.map((d) => d.Path)).toContain('/dev/fuse');
    expect(Settings.Env).toContain('DEBUG=0');
    const mounts = Object.fromEntries(Settings.Mounts.map((m) => [m.Name, m]));
    expect(mounts.state?.Source).toBe(stateSource);
    expect(mounts.state?.Destination).toBe('/mnt/state');
    expect(mounts.keys?.Source).toBe(keysSource);
    expect(mounts.keys?.Destination).toBe('/keys');
    expect(mounts.keys?.Options).toContain('ro');
    // The install created the state mount's host source (enable fails without it).
    expect(statSync(stateSource).isDirectory()).toBe(true);
  });

  it('runs the app under tini inside the plugin container', async () => {
    const procs = processes();
    const shim = procs.find((p) => p.cmdline.includes('containerd-shim') && p.cmdline.includes(pluginId));
    expect(shim, 'containerd shim of the plugin').toBeDefined();
    const init = procs.find((p) => p.ppid === shim!.pid);
    expect(init?.comm).toBe('tini');
    const app = procs.find((p) => p.ppid === init!.pid && p.cmdline.includes('/app/dist/adapter/main.js'));
    expect(app?.comm).toBe('node');
  });

  it('creates a key-auth volume (key from the keys mount); data written in one container is read in the next and on the sshd', async () => {
    await createKeyVolume(ref, keyVol, keyRemote, '/keys/id_ed25519');
    // Mounted at a path the image does not have: for an empty volume over a path the image has, Docker copies the
    // image dir's owner onto the volume root, which an sshfs mount refuses (the remote user cannot chown to root).
    const write = await dockerOk(
      [
        'run', '--rm', '-i', '-v', `${keyVol}:/remote`, env.image, 'sh', '-c',
        'cat > /remote/hello.txt && head -c 1048576 /dev/urandom > /remote/blob.bin && sha256sum /remote/blob.bin',
      ],
      { input: text },
    );
    binarySum = write.split(' ')[0] ?? '';
    expect(binarySum).toMatch(/^[0-9a-f]{64}$/);

    const read = await dockerOk([
      'run', '--rm', '-v', `${keyVol}:/remote`, env.image, 'sh', '-c',
      'cat /remote/hello.txt && sha256sum /remote/blob.bin && wc -c < /remote/blob.bin',
    ]);
    expect(read).toBe(`${text}${binarySum}  /remote/blob.bin\n1048576`);

    // The sshd side: the same bytes, owned by the ssh user.
    expect(await readRemote(keyRemote, 'hello.txt')).toBe(text);
    expect(sha256(readFileSync(path.join(keyRemote, 'blob.bin')))).toBe(binarySum);
    const uid = Number((await execa('id', ['-u', env.keyUser])).stdout);
    expect(statSync(path.join(keyRemote, 'blob.bin')).uid).toBe(uid);
  });

  it('creates a password-auth volume; data round-trips through two containers and the sshd', async () => {
    await dockerOk([
      'volume', 'create', '-d', ref,
      '-o', `sshcmd=${env.pwUser}@${env.sshHost}:${pwRemote}`,
      '-o', `port=${env.sshPort}`,
      '-o', `password=${env.password}`,
      pwVol,
    ]);
    await dockerOk(['run', '--rm', '-i', '-v', `${pwVol}:/remote`, env.image, 'sh', '-c', 'cat > /remote/pw.txt'], {
      input: pwText,
    });
    const read = await dockerOk(['run', '--rm', '-v', `${pwVol}:/remote`, env.image, 'cat', '/remote/pw.txt']);
    expect(`${read}\n`).toBe(pwText);
    expect(await readRemote(pwRemote, 'pw.txt')).toBe(pwText);
    const uid = Number((await execa('id', ['-u', env.pwUser])).stdout);
    expect(statSync(path.join(pwRemote, 'pw.txt')).uid).toBe(uid);
  });

  it('shows the volume in docker volume inspect, and its mount on the host under the propagated mount', async () => {
    const v = await inspectVolume(keyVol);
    expect(v.Name).toBe(keyVol);
    expect(v.Driver).toBe(ref);
    expect(v.Options?.sshcmd).toBe(`${env.keyUser}@${env.sshHost}:${keyRemote}`);
    expect(Number.isNaN(Date.parse(v.CreatedAt ?? ''))).toBe(false);
    expect(v.Status).toBeTruthy();
    const propagated = path.join(env.dir, 'docker-data', 'plugins', pluginId, 'propagated-mount');
    // The plugin answers with its own path (under /mnt/volumes); some daemons show the host path instead.
    expect(v.Mountpoint.startsWith('/mnt/volumes/') || v.Mountpoint.startsWith(`${propagated}/`)).toBe(true);

    const holder = res.container(`managed-holder-${randomId()}`);
    const holderId = (await dockerOk(['run', '-d', '--name', holder, '-v', `${keyVol}:/remote`, env.image, 'sleep', '300'])).trim();
    try {
      // Re-installing over a plugin whose volumes running containers use would cut their mounts: refused.
      const replace = await pluginScript('create', { PLUGIN_NAME: name, PLUGIN_DIR: pluginDir });
      expect(replace.exitCode).not.toBe(0);
      expect(replace.stderr).toMatch(/running containers use volumes/);
      expect(replace.stderr).toContain(holderId.slice(0, 12));

      // The plugin's mount propagates to the host (rshared: it shows under each peer of the propagated mount), from
      // where dockerd bind-mounts it into the container.
      await waitFor('the sshfs mount under the propagated mount', async () => (await sshfsMountsUnder(propagated)).length > 0);
      expect((await sshfsMountsUnder(propagated)).every((m) => m.mountpoint === path.join(propagated, keyVol))).toBe(true);
      // The plugin set its read-ahead through the bdi mount (a managed plugin's own /sys is read-only).
      expect(await readAheadKbAt(path.join(propagated, keyVol))).toBe(1024);
      const live = await inspectVolume(keyVol);
      expect(JSON.stringify(live.Status)).toMatch(/"mounted":true/);
    } finally {
      await dockerOk(['rm', '-f', holder]);
      res.containers.delete(holder);
    }
    await waitFor('the sshfs mount to go', async () => (await sshfsMountsUnder(propagated)).length === 0);
  });

  it('a changed host key names the known_hosts file by its host path (the state mount), with a fix that works there', async () => {
    const knownHosts = path.join(stateSource, 'known_hosts');
    const pinned = readFileSync(knownHosts, 'utf8');
    const hostPort = `[${env.sshHost}]:${env.sshPort}`;
    const serverKey = readFileSync(env.hostKeyFile, 'utf8').split(' ')[1] ?? '<no key>';
    expect(pinned).toContain(serverKey);
    // The server "was reinstalled": another key is pinned for it.
    const other = path.join(baseDir, 'other_host_key');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    await closeSharedLogins(stateSource); // a reinstalled server drops the connections made to it before
    writeFileSync(knownHosts, `${hostPort} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`, { mode: 0o600 });
    const r = await docker(['run', '--rm', '-v', `${keyVol}:/remote`, env.image, 'true']);
    expect(r.exitCode).not.toBe(0);
    const message = String((await inspectVolume(keyVol)).Status?.lastError ?? '');
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toContain(`Host key for ${hostPort} has changed`);
    expect(message).not.toContain('/mnt/state');
    // mountinfo's root field is the path within the filesystem holding the state source: here, the host's own path
    // when that filesystem is mounted at / (the README gives docker plugin inspect for the other case).
    const fsTarget = (await execa('findmnt', ['-n', '-o', 'TARGET', '-T', stateSource])).stdout.trim();
    const expected = fsTarget === '/' ? knownHosts : knownHosts.slice(fsTarget.length);
    const fix = /run on the Docker host (ssh-keygen -R \S+ -f \S+) and mount again/.exec(message)?.[1];
    expect(fix, message).toBe(`ssh-keygen -R '${hostPort}' -f ${expected}`);
    if (fsTarget === '/') {
      await execa('sh', ['-c', fix ?? 'false']);
      await dockerOk(['run', '--rm', '-v', `${keyVol}:/remote`, env.image, 'true']);
      expect(readFileSync(knownHosts, 'utf8')).toContain(serverKey);
    } else {
      writeFileSync(knownHosts, pinned, { mode: 0o600 });
    }
  });

  it('DEBUG set with docker plugin set logs requests; disable -f / enable with volumes keeps them listed and mountable', async () => {
    // DEBUG=0 (the default): no request lines from this plugin so far.
    expect(pluginLogLines().filter((l) => /debug \/VolumeDriver\./.test(l))).toEqual([]);

    const plain = await docker(['plugin', 'disable', ref]);
    expect(plain.exitCode).not.toBe(0);
    expect(plain.stderr).toMatch(/in use/i);

    await dockerOk(['plugin', 'disable', '-f', ref]);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', ref])).trim()).toBe('false');
    await dockerOk(['plugin', 'set', ref, 'DEBUG=1']);
    await dockerOk(['plugin', 'enable', ref]);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', ref])).trim()).toBe('true');

    const listed = (await dockerOk(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}'])).split('\n');
    expect(listed).toContain(`${ref} ${keyVol}`);
    expect(listed).toContain(`${ref} ${pwVol}`);

    const read = await dockerOk([
      'run', '--rm', '-v', `${keyVol}:/k`, '-v', `${pwVol}:/p`, env.image, 'sh', '-c', 'cat /k/hello.txt /p/pw.txt && sha256sum /k/blob.bin',
    ]);
    expect(read).toBe(`${text}${pwText}${binarySum}  /k/blob.bin`);

    await waitFor(
      'request lines of the plugin in the daemon log',
      () => pluginLogLines().some((l) => /debug \/VolumeDriver\.Mount\b/.test(l) && l.includes(keyVol)),
      10_000,
    );
    // The password never reaches the log.
    expect(pluginLogLines().some((l) => l.includes(env.password))).toBe(false);
  });

  it("plugin:install's closing hint for the keys directory works with volumes present", async () => {
    const hint = /^ {2}keys: {2}(docker plugin disable .*)$/m.exec(installMessage)?.[1];
    expect(hint, installMessage).toBeDefined();
    // Run as printed, with this plugin's own keys source for /root/.ssh so later tests keep their key.
    const command = (hint ?? '').replace('keys.source=/root/.ssh', `keys.source=${keysSource}`);
    expect(command).toContain(`docker plugin disable -f ${name} &&`);
    expect((await dockerOk(['volume', 'ls', '-q', '--filter', `driver=${ref}`])).split('\n')).toContain(keyVol);
    const r = await execa('bash', ['-c', command], { env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '' }, reject: false, input: '' });
    expect(r.exitCode, `${command}\n${r.stderr}`).toBe(0);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', ref])).trim()).toBe('true');
  });

  it("the README's Compose example runs twice against the managed plugin with driver: NAME:latest (and not with NAME)", async () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const example = /\*\*Compose\*\*[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const managedLine = 'driver: sshfs:latest   # host mode: sshfs';
    expect(example, "the README's Compose example names the managed plugin's driver").toContain(managedLine);
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'compose');
    const yamlFor = (driver: string) =>
      example
        .replace(managedLine, `driver: ${driver}`)
        .replace('sshcmd: alice@files.example.com:/srv/data', `sshcmd: ${env.keyUser}@${env.sshHost}:${remote}\n      port: "${env.sshPort}"`)
        .replace('IdentityFile: /keys/id_ed25519', 'IdentityFile: id_ed25519')
        .replace('image: busybox', `image: ${env.image}\n    network_mode: none`);
    const dir = path.join(baseDir, `compose-${randomId()}`);
    mkdirSync(dir, { recursive: true });
    const project = `managed${randomId()}`;
    const compose = (args: string[]) =>
      execa('docker-compose', ['-p', project, ...args], { cwd: dir, env: { DOCKER_HOST: env.dockerHost, COMPOSE_INTERACTIVE_NO_CLI: '1' }, reject: false, timeout: 180_000, input: '' });
    const up = () => compose(['up', '--no-color', '--abort-on-container-exit', '--exit-code-from', 'app']);
    res.volume(`${project}_data`);
    try {
      writeFileSync(path.join(dir, 'docker-compose.yml'), yamlFor(ref));
      for (const round of [1, 2]) {
        const r = await up();
        expect(r.exitCode, `round ${round}: ${r.stdout}\n${r.stderr}`).toBe(0);
      }
      expect((await inspectVolume(`${project}_data`)).Driver).toBe(ref);
      // The name without :latest: docker-compose compares it with Docker's "NAME:latest" literally.
      writeFileSync(path.join(dir, 'docker-compose.yml'), yamlFor(name));
      const wrong = await up();
      expect(wrong.exitCode).not.toBe(0);
      expect(wrong.stderr).toContain(`specifies driver ${name}, but a volume with the same name uses a different driver (${ref})`);
    } finally {
      writeFileSync(path.join(dir, 'docker-compose.yml'), yamlFor(ref));
      // Removed: no longer tracked (dockerd asks every plugin it knows about a volume it does not have).
      if ((await compose(['down', '--volumes'])).exitCode === 0) res.volumes.delete(`${project}_data`);
    }
  });

  it('bdi.source set to an empty directory withholds the block devices\' tunables: read-ahead stays at the kernel default', async () => {
    const noBdi = path.join(baseDir, 'no-bdi');
    // What the README says: plugin.sh enable with the setting (it creates the missing source directory).
    const set = await pluginScript('enable', { PLUGIN_NAME: name, PLUGIN_SETTINGS: `bdi.source=${noBdi}` });
    expect(set.exitCode, set.stderr).toBe(0);
    const mounts = JSON.parse(await dockerOk(['plugin', 'inspect', '-f', '{{json .Settings.Mounts}}', ref])) as { Name: string; Source: string }[];
    expect(mounts.find((m) => m.Name === 'bdi')?.Source).toBe(noBdi);
    pluginId = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', ref])).trim();

    const propagated = path.join(env.dir, 'docker-data', 'plugins', pluginId, 'propagated-mount');
    const holder = res.container(`managed-nobdi-${randomId()}`);
    await dockerOk(['run', '-d', '--name', holder, '-v', `${keyVol}:/remote`, env.image, 'sleep', '300']);
    try {
      await waitFor('the sshfs mount under the propagated mount', async () => (await sshfsMountsUnder(propagated)).length > 0);
      await waitFor('the plugin to log that read-ahead was not set', () => pluginLogLines().some((l) => l.includes(`volume ${keyVol}: read_ahead_kb=1024 not set`)), 20_000);
      // The host's own entry for the mount: untouched, the kernel's value for a FUSE mount.
      expect(await readAheadKbAt(path.join(propagated, keyVol))).toBe(128);
      expect((await inspectVolume(keyVol)).Status?.readAheadKb).toBeUndefined();
      expect(readdirSync(noBdi)).toEqual([]);
      expect(`${await dockerOk(['exec', holder, 'cat', '/remote/hello.txt'])}\n`).toBe(text);
    } finally {
      await dockerOk(['rm', '-f', holder]);
      res.containers.delete(holder);
    }
    // Back to the default, which the tests after this one expect.
    const back = await pluginScript('enable', { PLUGIN_NAME: name, PLUGIN_SETTINGS: 'bdi.source=/sys/devices/virtual/bdi' });
    expect(back.exitCode, back.stderr).toBe(0);
  }, 600_000);

  it('installing again replaces the plugin, keeps its settings, and its volumes stay usable', async () => {
    const oldId = pluginId;
    const r = await pluginScript('install', {
      PLUGIN_NAME: name,
      PLUGIN_DIR: pluginDir,
      PLUGIN_BUILDER: 'offline',
      PLUGIN_SKIP_APP_BUILD: '1',
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/replacing the installed plugin/);
    pluginId = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', ref])).trim();
    expect(pluginId).not.toBe(oldId);
    const settings = JSON.parse(await dockerOk(['plugin', 'inspect', '-f', '{{json .Settings}}', ref])) as {
      Env: string[];
      Mounts: { Name: string; Source: string }[];
    };
    expect(settings.Env).toContain('DEBUG=1');
    expect(settings.Mounts.find((m) => m.Name === 'keys')?.Source).toBe(keysSource);
    expect(settings.Mounts.find((m) => m.Name === 'state')?.Source).toBe(stateSource);
    const read = await dockerOk(['run', '--rm', '-v', `${keyVol}:/k`, '-v', `${pwVol}:/p`, env.image, 'cat', '/k/hello.txt', '/p/pw.txt']);
    expect(read).toBe(`${text}${pwText}`.replace(/\n$/, ''));

    // plugin.sh enable changes settings of the enabled plugin (volumes present, none in use) and enables it again.
    const set = await pluginScript('enable', { PLUGIN_NAME: name, PLUGIN_DEBUG: '0' });
    expect(set.exitCode, set.stderr).toBe(0);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}} {{json .Settings.Env}}', ref])).trim()).toMatch(/^true .*"DEBUG=0"/);
  });

  it('docker volume rm, plugin disable and plugin rm succeed and leave no mount or process behind', async () => {
    await dockerOk(['volume', 'rm', keyVol, pwVol]);
    res.volumes.clear();
    // Remote data is never deleted by volume rm.
    expect(existsSync(path.join(keyRemote, 'blob.bin'))).toBe(true);
    expect(existsSync(path.join(pwRemote, 'pw.txt'))).toBe(true);

    await dockerOk(['plugin', 'disable', ref]);
    await dockerOk(['plugin', 'rm', ref]);
    const ls = await dockerOk(['plugin', 'ls', '--format', '{{.Name}}']);
    expect(ls.split('\n')).not.toContain(ref);

    await waitFor('the plugin\'s mounts to go', async () => (await readMounts()).every((m) => !m.mountpoint.includes(pluginId)));
    await waitFor(
      'the plugin\'s processes to exit',
      () => processes().every((p) => !p.cmdline.includes(pluginId) && !p.cmdline.includes(keyRemote) && !p.cmdline.includes(pwRemote)),
      20_000,
    );
    expect(await sshfsMountsUnder(path.join(env.dir, 'docker-data', 'plugins'))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// push: a fake registry on 127.0.0.1 refuses the way real registries do; plugin.sh push must say what to do.

type RegistryMode = 'unauthorized' | 'denied' | 'name-unknown' | 'manifest-invalid';

interface FakeRegistry {
  port: number;
  mode: RegistryMode;
  requests: string[];
  close(): Promise<void>;
}

/**
 * A registry on 127.0.0.1 that refuses in MODE. It speaks TLS with a throwaway self-signed certificate: dockerd
 * treats 127.0.0.0/8 as an insecure registry, i.e. HTTPS without verification (plugin push does not fall back to HTTP).
 */
async function startFakeRegistry(certDir: string): Promise<FakeRegistry> {
  mkdirSync(certDir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(certDir, 'key.pem');
  const certFile = path.join(certDir, 'cert.pem');
  if ((await execa('sh', ['-c', 'command -v openssl'], { reject: false })).exitCode !== 0) {
    await execa('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl'], { reject: false, input: '' });
  }
  const openssl = await execa(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
    ],
    { reject: false, input: '' },
  );
  if (openssl.exitCode !== 0) throw new Error(`openssl could not make the fake registry's certificate: ${openssl.stderr}`);
  const state = { mode: 'unauthorized' as RegistryMode, requests: [] as string[] };
  let uploads = 0;
  const server = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      const method = req.method ?? 'GET';
      const url = new URL(req.url ?? '/', 'http://registry.invalid');
      state.requests.push(`${method} ${url.pathname}`);
      res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
      const fail = (status: number, code: string, message: string, detail: unknown = null): void => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code, message, detail }] }));
      };
      if (state.mode === 'unauthorized') {
        res.setHeader('WWW-Authenticate', 'Basic realm="fake-registry"');
        fail(401, 'UNAUTHORIZED', 'authentication required');
        return;
      }
      const repo = /^\/v2\/(.+?)\/(blobs|manifests)\//.exec(url.pathname)?.[1] ?? '';
      if (method === 'GET' && url.pathname === '/v2/') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{}');
      } else if (method === 'HEAD' && url.pathname.includes('/blobs/')) {
        res.writeHead(404);
        res.end();
      } else if (method === 'POST' && url.pathname.endsWith('/blobs/uploads/')) {
        if (state.mode === 'denied') return fail(403, 'DENIED', 'requested access to the resource is denied');
        if (state.mode === 'name-unknown') return fail(404, 'NAME_UNKNOWN', 'repository name not known to registry');
        const id = `u${++uploads}`;
        res.writeHead(202, { Location: `/v2/${repo}/blobs/uploads/${id}`, Range: '0-0', 'Docker-Upload-UUID': id, 'Content-Length': '0' });
        res.end();
      } else if (method === 'PATCH' && url.pathname.includes('/blobs/uploads/')) {
        res.writeHead(202, { Location: url.pathname, Range: '0-0', 'Content-Length': '0' });
        res.end();
      } else if (method === 'PUT' && url.pathname.includes('/blobs/uploads/')) {
        const digest = url.searchParams.get('digest') ?? '';
        res.writeHead(201, { Location: `/v2/${repo}/blobs/${digest}`, 'Docker-Content-Digest': digest, 'Content-Length': '0' });
        res.end();
      } else if (method === 'PUT' && url.pathname.includes('/manifests/')) {
        fail(400, 'MANIFEST_INVALID', 'manifest invalid', 'unsupported config media type application/vnd.docker.plugin.v1+json');
      } else {
        fail(404, 'NOT_FOUND', 'not found');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const registry: FakeRegistry = {
    port: (server.address() as AddressInfo).port,
    get mode() {
      return state.mode;
    },
    set mode(m: RegistryMode) {
      state.mode = m;
    },
    requests: state.requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return registry;
}

describe('plugin.sh push explains a registry refusal', () => {
  const env = loadEnv();
  const pluginDir = path.join(env.dir, 'managed', `push-${randomId()}`, 'plugin');
  let registry: FakeRegistry | undefined;
  let pushName = '';

  beforeAll(async () => {
    registry = await startFakeRegistry(path.join(path.dirname(pluginDir), 'tls'));
    pushName = `127.0.0.1:${registry.port}/e2e/sshfs-push-${randomId()}:amd64`;
    const build = await execa('bash', [path.join(REPO_ROOT, 'scripts', 'build-rootfs.sh'), pluginDir], {
      reject: false,
      timeout: 300_000,
      input: '',
    });
    if (build.exitCode !== 0) throw new Error(`build-rootfs.sh failed:\n${build.stderr}`);
    const create = await pluginScript('create', { PLUGIN_NAME: pushName, PLUGIN_DIR: pluginDir });
    if (create.exitCode !== 0) throw new Error(`plugin.sh create failed:\n${create.stderr}`);
  }, 600_000);

  afterAll(async () => {
    if (pushName !== '') await docker(['plugin', 'rm', '-f', pushName]);
    await registry?.close();
    rmSync(path.dirname(pluginDir), { recursive: true, force: true });
  }, 120_000);

  // The docker CLI's login store of this test: empty (not logged in) unless a test writes a login into it.
  const dockerConfig = path.join(path.dirname(pluginDir), 'docker-config');
  const setLogin = (loggedIn: boolean) => {
    mkdirSync(dockerConfig, { recursive: true, mode: 0o700 });
    const auths = loggedIn ? { [`127.0.0.1:${registry!.port}`]: { auth: Buffer.from('e2e:secret').toString('base64') } } : {};
    writeFileSync(path.join(dockerConfig, 'config.json'), JSON.stringify({ auths }), { mode: 0o600 });
  };
  const push = () => pluginScript('push', { PLUGIN_NAME: pushName, DOCKER_CONFIG: dockerConfig }, 180_000);

  it('refuses a name without a namespace before contacting Docker Hub', async () => {
    const r = await pluginScript('push', { PLUGIN_NAME: 'sshfs-e2e-nonamespace' });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('docker.io/library/sshfs-e2e-nonamespace');
    expect(r.stderr).toContain('PLUGIN_NAME=<your-user>/');
  });

  it('not logged in: tells to docker login to that registry', async () => {
    registry!.mode = 'unauthorized';
    const r = await push();
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`docker login 127.0.0.1:${registry!.port}`);
  });

  it('denied while not logged in: tells to docker login to that registry', async () => {
    registry!.mode = 'denied';
    setLogin(false);
    const r = await push();
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).toMatch(/403|denied/i);
    expect(r.stderr).toMatch(/denied the push.*you are not logged in/);
    expect(r.stderr).toContain(`docker login 127.0.0.1:${registry!.port}`);
  });

  it('denied while logged in: push rights first, another namespace on the same registry, registries without plugin support', async () => {
    registry!.mode = 'denied';
    setLogin(true);
    const r = await push();
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('you are logged in, but this account may not push there');
    expect(r.stderr).toContain(`PLUGIN_NAME=127.0.0.1:${registry!.port}/<namespace>/`);
    expect(r.stderr).toMatch(/repository\(plugin\)/);
    setLogin(false);
  });

  it('unknown repository: tells to create it first', async () => {
    registry!.mode = 'name-unknown';
    const r = await push();
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/has no repository/);
  });

  it('registry without plugin support: says so and names registries that have it', async () => {
    registry!.mode = 'manifest-invalid';
    const r = await push();
    expect(r.exitCode).not.toBe(0);
    expect(registry!.requests.some((line) => line.startsWith('PUT') && line.includes('/manifests/'))).toBe(true);
    expect(r.stderr).toMatch(/does not support Docker plugins/);
  });
});
