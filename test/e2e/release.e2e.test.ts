// Releasing the plugin as users get it:
//  1. the Dockerfile build (what `npm run plugin:install` picks wherever node:20-slim can be pulled): here against a
//     stand-in base image made offline from Debian's packages (scripts/stand-in-base.sh, cached outside the repo),
//     enabled and mounting a volume;
//  2. a round trip through a real registry (distribution 2.8 on 127.0.0.1, TLS, htpasswd): push refused without a
//     login and explained, accepted after `docker login`, installed with settings on a second, fresh dockerd, and
//     upgraded there to the next pushed version keeping volumes, settings and state.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, Resources, docker, dockerOk, loadEnv, makeRemoteSubdir, randomId, readRemote, sshfsMountsUnder, waitFor } from './harness.js';
import { freshPluginDirs, keyVolumeRoundTrip, pluginDirs, pluginScript, removeManagedPlugin } from './managed-plugin.js';
import { startDenyingProxy, startDockerd, startRegistry, type DenyingProxy, type Dockerd, type Registry } from './release-env.js';

const builtSize = (stderr: string): string => /built .* with the (\w+) builder \((\d+) MiB/.exec(stderr)?.slice(1, 3).join(': ') ?? '?';

describe('Dockerfile build (stand-in node:20-slim made offline), enabled, mounting a volume', () => {
  const env = loadEnv();
  const dirs = pluginDirs('release', 'sshfs-df');
  const { name, ref } = dirs;
  const res = new Resources();
  const vol = res.volume(`df-${randomId()}`);
  let buildLog = '';
  let networkHint = '';

  beforeAll(async () => {
    freshPluginDirs(dirs);
    // The test dockerd cannot pull: give it the stand-in base image (made once, then imported from the cache).
    const base = await execa('bash', [path.join(REPO_ROOT, 'scripts', 'stand-in-base.sh'), 'node:20-slim'], {
      env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '' },
      reject: false,
      all: true,
      timeout: 900_000,
      input: '',
    });
    if (base.exitCode !== 0) throw new Error(`stand-in-base.sh failed:\n${base.all ?? ''}`);
    // Without a bridge, dockerd gives the build's RUN steps no network: npm's EAI_AGAIN, and the hint names the fix,
    // which the install below then uses.
    const offline = await pluginScript('build', { PLUGIN_NAME: name, PLUGIN_DIR: dirs.pluginDir, PLUGIN_BUILDER: 'dockerfile', PLUGIN_SKIP_APP_BUILD: '1' });
    networkHint = offline.exitCode === 0 ? '(the build without a network succeeded)' : offline.stderr;
    // `npm run plugin:install` with the Dockerfile builder; the test dockerd has no bridge, so RUN steps use the host's.
    const r = await pluginScript('install', {
      PLUGIN_NAME: name,
      PLUGIN_DIR: dirs.pluginDir,
      PLUGIN_BUILDER: 'dockerfile',
      PLUGIN_BUILD_NETWORK: 'host',
      PLUGIN_STATE_SOURCE: dirs.stateSource,
      PLUGIN_KEYS_SOURCE: dirs.keysSource,
    });
    buildLog = r.stderr;
    if (r.exitCode !== 0) throw new Error(`plugin.sh install (dockerfile) failed (${r.exitCode}):\n${r.stderr}\n${r.stdout}`);
    console.log(`[release] rootfs size, ${builtSize(r.stderr)} MiB`);
  }, 1_200_000);

  afterAll(async () => {
    const errors = await res.cleanup();
    await removeManagedPlugin(ref);
    await docker(['image', 'rm', '-f', 'docker-volume-sshfs-rootfs:build']);
    if ((await sshfsMountsUnder(dirs.baseDir)).length === 0) rmSync(dirs.baseDir, { recursive: true, force: true });
    if (errors.length > 0) console.warn(`[release] cleanup: ${errors.join('; ')}`);
  }, 300_000);

  it('a build whose RUN steps have no network (no bridge) says so and names the setting the install below uses', () => {
    expect(networkHint).toMatch(/EAI_AGAIN/);
    expect(networkHint).toContain('PLUGIN_BUILD_NETWORK=host npm run plugin:install');
  });

  it('was built from the Dockerfile, holds what the plugin runs and not the tooling it does not', () => {
    expect(buildLog).toMatch(/with the dockerfile builder/);
    const rootfs = path.join(dirs.pluginDir, 'rootfs');
    for (const f of ['usr/local/bin/node', 'usr/bin/sshfs', 'usr/bin/ssh', 'usr/bin/fusermount3', 'usr/bin/tini', 'app/dist/adapter/main.js']) {
      expect(existsSync(path.join(rootfs, f)), f).toBe(true);
    }
    // Production dependencies only; no npm, package manager or docs (the plugin never runs them).
    const deps = readdirSync(path.join(rootfs, 'app', 'node_modules'));
    expect(deps).toContain('hono');
    for (const dev of ['typescript', 'vitest', 'eslint', 'fast-check', '.bin']) expect(deps).not.toContain(dev);
    for (const gone of ['usr/local/lib/node_modules/npm', 'usr/local/bin/npm', 'usr/local/bin/corepack', 'usr/share/doc', 'usr/bin/apt-get', 'usr/bin/dpkg', 'usr/bin/perl']) {
      expect(existsSync(path.join(rootfs, gone)), gone).toBe(false);
    }
  });

  it('is enabled and mounts a key-auth volume; data reaches the sshd', async () => {
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', ref])).trim()).toBe('true');
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'dockerfile');
    await keyVolumeRoundTrip(ref, vol, remote, 'df.txt', `built from the Dockerfile: ${randomId(8)}\n`);
  });
});

describe('registry round trip: push, install on a second dockerd, upgrade', () => {
  const env = loadEnv();
  const id = randomId();
  const baseDir = path.join(env.dir, 'release', `registry-${id}`);
  const pluginDir = path.join(baseDir, 'plugin');
  const dockerConfig = path.join(baseDir, 'docker-config'); // the CLI's login store, not root's ~/.docker
  const node2Config = path.join(baseDir, 'node2-docker-config');
  const keysSource = path.join(baseDir, 'node2-keys');
  const stateSource = path.join(baseDir, 'node2-state');
  const alias = `sshfs-r${id}`;
  const vol = `reg-${randomId()}`;
  let registry: Registry | undefined;
  let node2: Dockerd | undefined;
  let ref = '';
  let remote = '';
  const text = `installed from the registry: ${randomId(8)}\n`;
  let installLine = '';

  const push = () => pluginScript('push', { PLUGIN_NAME: ref, DOCKER_CONFIG: dockerConfig }, 600_000);
  let proxy: DenyingProxy | undefined;
  const login = async (host: string): Promise<void> => {
    const r = await execa('docker', ['login', '-u', registry!.user, '--password-stdin', host], {
      env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '', DOCKER_CONFIG: dockerConfig },
      input: registry!.password,
      reject: false,
    });
    expect(r.exitCode, r.stderr).toBe(0);
  };
  const on2 = async (args: string[], input?: string): Promise<string> => {
    const r = await node2!.docker(args, { input, env: { DOCKER_CONFIG: node2Config } });
    if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} on the second dockerd exited ${r.exitCode}:\n${r.stderr}`);
    return r.stdout.trim();
  };
  const pluginLog2 = (pluginId: string): string[] =>
    readFileSync(node2!.logFile, 'utf8').split('\n').filter((l) => l.includes(`plugin=${pluginId}`));

  beforeAll(async () => {
    rmSync(baseDir, { recursive: true, force: true });
    for (const dir of [dockerConfig, node2Config]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(path.join(dir, 'config.json'), '{}\n', { mode: 0o600 });
    }
    registry = await startRegistry(path.join(baseDir, 'registry'));
    ref = `${registry.host}/e2e/sshfs:amd64`;
    // What a publisher runs: build (offline here, the smaller rootfs) and create under the name to push.
    const build = await pluginScript('build', { PLUGIN_NAME: ref, PLUGIN_DIR: pluginDir, PLUGIN_BUILDER: 'offline', PLUGIN_SKIP_APP_BUILD: '1' });
    if (build.exitCode !== 0) throw new Error(`plugin.sh build failed:\n${build.stderr}`);
    console.log(`[release] rootfs size, ${builtSize(build.stderr)} MiB`);
    const create = await pluginScript('create', { PLUGIN_NAME: ref, PLUGIN_DIR: pluginDir });
    if (create.exitCode !== 0) throw new Error(`plugin.sh create failed:\n${create.stderr}`);
    node2 = await startDockerd(path.join(baseDir, 'node2'));
    // The fresh dockerd cannot pull either: it gets the test image from the first one.
    const load = await execa('sh', ['-c', `docker save "$IMAGE" | DOCKER_HOST="$NODE2" docker load -q`], {
      env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '', IMAGE: env.image, NODE2: node2.host },
      reject: false,
      all: true,
    });
    if (load.exitCode !== 0) throw new Error(`loading ${env.image} into the second dockerd failed:\n${load.all ?? ''}`);
    mkdirSync(keysSource, { recursive: true, mode: 0o700 });
    copyFileSync(env.keyFile, path.join(keysSource, 'id_ed25519'));
    chmodSync(path.join(keysSource, 'id_ed25519'), 0o600);
    mkdirSync(stateSource, { recursive: true, mode: 0o700 });
    remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'registry');
  }, 900_000);

  afterAll(async () => {
    if (node2) {
      await node2.docker(['volume', 'rm', '-f', vol]);
      await node2.docker(['plugin', 'disable', '-f', alias]);
      await node2.docker(['plugin', 'rm', '-f', alias]);
      await node2.stop();
    }
    if (ref !== '') await docker(['plugin', 'rm', '-f', ref]);
    await proxy?.stop();
    await registry?.stop();
    if ((await sshfsMountsUnder(baseDir)).length === 0) rmSync(baseDir, { recursive: true, force: true });
  }, 300_000);

  it('plugin:push without a login is refused, and the message says to docker login to that registry', async () => {
    const r = await push();
    expect(r.exitCode).not.toBe(0);
    expect(`${r.stdout}\n${r.stderr}`).toMatch(/denied|unauthorized|authentication required/i);
    expect(r.stderr).toContain(`docker login ${registry!.host}`);
    // Another namespace on the same registry, never a Docker Hub one.
    expect(r.stderr).toContain(`PLUGIN_NAME=${registry!.host}/<namespace>/sshfs:amd64 npm run plugin:create`);
  });

  it('after docker login, plugin:push succeeds', async () => {
    const login = await execa('docker', ['login', '-u', registry!.user, '--password-stdin', registry!.host], {
      env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '', DOCKER_CONFIG: dockerConfig },
      input: registry!.password,
      reject: false,
    });
    expect(login.exitCode, login.stderr).toBe(0);
    const r = await push();
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    // The install command it prints is the one the fresh dockerd below runs.
    installLine = /^ *(docker plugin install .*)$/m.exec(r.stderr)?.[1] ?? '';
    expect(installLine).toBe(
      `docker plugin install --grant-all-permissions --alias sshfs ${ref} keys.source=/var/lib/docker-volume-sshfs/keys state.source=/var/lib/docker-volume-sshfs/state`,
    );
    expect(r.stderr).toContain(`docker login ${registry!.host}`);
    expect(r.stderr).toContain('mkdir -p -m 0700 /var/lib/docker-volume-sshfs/keys /var/lib/docker-volume-sshfs/state');
  });

  it('the same build is published under a second registry name (dockerd 20.10 refuses a rootfs it holds for another plugin)', async () => {
    proxy = await startDenyingProxy(registry!, 'denied');
    await login(proxy.host);
    const second = `${proxy.host}/e2e/sshfs:amd64`;
    const create = await pluginScript('create', { PLUGIN_NAME: second, PLUGIN_DIR: pluginDir });
    expect(create.exitCode, create.stderr).toBe(0);
    expect(create.stderr).toContain('differs by one file');
    const r = await pluginScript('push', { PLUGIN_NAME: second, DOCKER_CONFIG: dockerConfig });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toContain(`--alias sshfs ${second} `);
    await docker(['plugin', 'rm', '-f', second]);
  });

  it("a 403 (Harbor: logged in, no push rights) says so, keeps the registry host, and its suggested command works", async () => {
    const deniedRef = `${proxy!.host}/denied/sshfs:amd64`;
    const create = await pluginScript('create', { PLUGIN_NAME: deniedRef, PLUGIN_DIR: pluginDir });
    expect(create.exitCode, create.stderr).toBe(0);
    const r = await pluginScript('push', { PLUGIN_NAME: deniedRef, DOCKER_CONFIG: dockerConfig });
    console.log(`[release] dockerd's words for a 403: ${r.stdout.split('\n').filter((l) => /denied|403|error/i.test(l)).join(' | ')}`);
    expect(r.exitCode).not.toBe(0);
    expect(proxy!.denied()).toBeGreaterThan(0);
    expect(r.stderr).toContain('you are logged in, but this account may not push there');
    expect(r.stderr).not.toContain('not logged in');
    const suggested = new RegExp(`^ *(PLUGIN_NAME=${proxy!.host.replace(/\./g, '\\.')}/<namespace>/sshfs:amd64 npm run plugin:create && .*plugin:push)$`, 'm').exec(r.stderr)?.[1];
    expect(suggested, r.stderr).toBeDefined();
    await docker(['plugin', 'rm', '-f', deniedRef]);
    // The suggestion, run as printed with a namespace the account may write.
    const run = await execa('bash', ['-c', suggested!.replaceAll('<namespace>', 'mine')], {
      cwd: REPO_ROOT,
      env: { DOCKER_HOST: env.dockerHost, DOCKER_CONTEXT: '', DOCKER_CONFIG: dockerConfig, PLUGIN_DIR: pluginDir },
      reject: false,
      all: true,
      input: '',
      timeout: 600_000,
    });
    expect(run.exitCode, run.all).toBe(0);
    const tags = JSON.parse(await registry!.get('/v2/mine/sshfs/tags/list')) as { tags: string[] };
    expect(tags.tags).toEqual(['amd64']);
    await docker(['plugin', 'rm', '-f', `${proxy!.host}/mine/sshfs:amd64`]);
  });

  it('a push to Docker Hub without a namespace names a tag of the architecture built (PLUGIN_ARCH)', async () => {
    for (const [arch, tag] of [['armv7', 'armv7'], ['arm64', 'arm64'], ['', 'amd64']] as const) {
      const r = await pluginScript('push', { PLUGIN_NAME: 'sshfs', PLUGIN_ARCH: arch, DOCKER_CONFIG: dockerConfig });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`PLUGIN_NAME=<your-user>/sshfs:${tag} npm run plugin:create`);
    }
  });

  it('plugin:push pushes one tag per architecture: an arm64 build goes to :arm64 next to :amd64', async () => {
    const armRef = ref.replace(/:amd64$/, ':arm64');
    const armDir = path.join(baseDir, 'plugin-arm64');
    const arch = { PLUGIN_NAME: armRef, PLUGIN_DIR: armDir, PLUGIN_ARCH: 'arm64', PLUGIN_SKIP_APP_BUILD: '1', BUILD_CACHE: '/var/cache/sshfs-e2e' };
    const build = await pluginScript('build', arch);
    expect(build.exitCode, build.stderr).toBe(0);
    console.log(`[release] rootfs size, arm64 ${builtSize(build.stderr)} MiB`);
    const create = await pluginScript('create', arch);
    expect(create.exitCode, create.stderr).toBe(0);
    const r = await pluginScript('push', { PLUGIN_NAME: armRef, DOCKER_CONFIG: dockerConfig });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toContain('Install it on each machine of linux/arm64');

    // Enabling it on this amd64 daemon without emulation (an empty binfmt_misc) is refused before anything changes,
    // with the cause that would otherwise be only in the daemon log, and the command that installs the right one.
    const noBinfmt = path.join(baseDir, 'no-binfmt');
    mkdirSync(noBinfmt, { recursive: true });
    expect(await dockerOk(['plugin', 'inspect', '-f', '{{.Config.Description}}', armRef])).toContain('(for linux/arm64)');
    const enable = await pluginScript('enable', { PLUGIN_NAME: armRef, PLUGIN_BINFMT_DIR: noBinfmt });
    expect(enable.exitCode).not.toBe(0);
    expect(enable.stderr).toContain(`${armRef} is built for linux/arm64, but this Docker daemon runs on linux/amd64`);
    expect(enable.stderr).toContain('PLUGIN_ARCH=amd64 npm run plugin:install');
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', armRef])).trim()).toBe('false');
    await docker(['plugin', 'rm', '-f', armRef]);
    const tags = JSON.parse(await registry!.get('/v2/e2e/sshfs/tags/list')) as { tags: string[] };
    expect(tags.tags.sort()).toEqual(['amd64', 'arm64']);
  });

  it('docker plugin install --grant-all-permissions with settings on a fresh dockerd; a volume works end to end', async () => {
    // The registry wants a login for pulls too: the second machine logs in with the same account.
    await on2(['login', '-u', registry!.user, '--password-stdin', registry!.host], registry!.password);
    // The line plugin:push printed, with this test's alias and directories for the machine-wide ones.
    const args = installLine
      .replace('--alias sshfs ', `--alias ${alias} `)
      .replace('keys.source=/var/lib/docker-volume-sshfs/keys', `keys.source=${keysSource}`)
      .replace('state.source=/var/lib/docker-volume-sshfs/state', `state.source=${stateSource}`)
      .split(' ');
    expect(args.slice(0, 3)).toEqual(['docker', 'plugin', 'install']);
    await on2([...args.slice(1), 'DEBUG=1']);
    const [p] = JSON.parse(await on2(['plugin', 'inspect', alias])) as { Id: string; Enabled: boolean; PluginReference: string; Settings: { Env: string[] } }[];
    expect(p!.Enabled).toBe(true);
    expect(p!.PluginReference).toBe(ref);
    expect(p!.Settings.Env).toContain('DEBUG=1');

    await on2(['volume', 'create', '-d', alias, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`, '-o', `port=${env.sshPort}`, '-o', 'IdentityFile=id_ed25519', vol]);
    await on2(['run', '--rm', '-i', '-v', `${vol}:/remote`, env.image, 'sh', '-c', 'cat > /remote/reg.txt'], text);
    expect(await readRemote(remote, 'reg.txt')).toBe(text);
    expect(`${await on2(['run', '--rm', '-v', `${vol}:/remote`, env.image, 'cat', '/remote/reg.txt'])}\n`).toBe(text);
    // DEBUG=1 as set at install: request lines in that daemon's log.
    await waitFor('request lines in the second dockerd log', () => pluginLog2(p!.Id).some((l) => /VolumeDriver\.Mount/.test(l)), 10_000);
  });

  it('docker plugin upgrade to the next pushed version keeps volumes, settings and state', async () => {
    const before = JSON.parse(await on2(['plugin', 'inspect', alias])) as { Id: string; Settings: { Env: string[]; Mounts: { Name: string; Source: string }[] } }[];
    // The next version: same name and tag, a changed plugin (its description marks it).
    const config = JSON.parse(readFileSync(path.join(pluginDir, 'config.json'), 'utf8')) as { description: string };
    config.description = `${config.description} (next: ${id})`;
    writeFileSync(path.join(pluginDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    const create = await pluginScript('create', { PLUGIN_NAME: ref, PLUGIN_DIR: pluginDir });
    expect(create.exitCode, create.stderr).toBe(0);
    const r = await push();
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);

    // The README's upgrade: disable -f (volumes exist), upgrade, set the mount sources again, enable.
    await on2(['plugin', 'disable', '-f', alias]);
    await on2(['plugin', 'upgrade', '--grant-all-permissions', alias, ref]);
    // Docker keeps env settings across an upgrade but starts the plugin with the new config's mount sources (while
    // inspect still shows the old ones): the README's upgrade sets them again before enabling.
    await on2(['plugin', 'set', alias, `state.source=${stateSource}`, `keys.source=${keysSource}`]);
    await on2(['plugin', 'enable', alias]);
    const [after] = JSON.parse(await on2(['plugin', 'inspect', alias])) as {
      Id: string;
      Enabled: boolean;
      Config: { Description: string };
      Settings: { Env: string[]; Mounts: { Name: string; Source: string }[] };
    }[];
    expect(after!.Enabled).toBe(true);
    expect(after!.Config.Description).toContain(`(next: ${id})`);
    expect(after!.Settings.Env).toEqual(before[0]!.Settings.Env);
    expect(after!.Settings.Mounts.find((m) => m.Name === 'keys')?.Source).toBe(keysSource);
    expect(after!.Settings.Mounts.find((m) => m.Name === 'state')?.Source).toBe(stateSource);
    // The volume and its options come back from the plugin's state, and it mounts again.
    expect((await on2(['volume', 'ls', '--format', '{{.Name}}'])).split('\n')).toContain(vol);
    const inspect = JSON.parse(await on2(['volume', 'inspect', vol])) as { Options: Record<string, string> }[];
    expect(inspect[0]!.Options.sshcmd).toBe(`${env.keyUser}@${env.sshHost}:${remote}`);
    expect(`${await on2(['run', '--rm', '-v', `${vol}:/remote`, env.image, 'cat', '/remote/reg.txt'])}\n`).toBe(text);
  });
});
