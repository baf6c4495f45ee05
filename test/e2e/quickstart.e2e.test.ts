// The README's quick starts, run as they stand: each fenced block after `<!-- quickstart: NAME -->` is taken from the
// README and run with bash, with only the test's own server, key, names and directories put in for the README's
// (the substitutions are listed in `forTest`), so a quick start cannot drift from what works. The Docker blocks go
// to the test dockerd; the host service is installed into a directory tree of this test (HOST_*) and started as its
// unit would be (test/e2e/host-service.ts); Podman uses its own storage, and containers.conf.d as the README writes it.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerCliEnv } from '../../scripts/lib/e2e-env.js';
import { endedPluginStandIn } from './ended-plugins.js';
import { REPO_ROOT, docker, dockerOk, e2eDir, loadEnv, makeRemoteSubdir, randomId, readMounts, sshfsMountsUnder } from './harness.js';
import { HostService, hostPaths, hostScript } from './host-service.js';
import { pluginDirs, removeManagedPlugin } from './managed-plugin.js';
import { forTest, quickstart } from './readme-blocks.js';

const env = loadEnv();
/** Runs SCRIPT with bash -euo pipefail in the checkout, the test dockerd as the docker CLI's daemon; its output. */
async function run(script: string, extraEnv: Record<string, string> = {}, prelude = ''): Promise<string> {
  const r = await execa('bash', ['-euo', 'pipefail', '-c', `${prelude}\n${script}`], {
    cwd: REPO_ROOT,
    env: { ...dockerCliEnv(env), ...extraEnv },
    reject: false,
    all: true,
    input: '',
    timeout: 900_000,
  });
  if (r.exitCode !== 0) throw new Error(`the quick start failed (exit ${r.exitCode}):\n${script}\n--- output ---\n${r.all ?? ''}`);
  return r.all ?? '';
}

/** A remote directory holding hello.txt, so the block's `ls /data` shows that the volume reached the server. */
async function remoteWithFile(prefix: string): Promise<string> {
  const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, prefix);
  await execa('runuser', ['-u', env.keyUser, '--', 'sh', '-c', `echo hello > '${remote}/hello.txt'`]);
  return remote;
}

describe('README quick start: Docker, managed plugin', () => {
  const dirs = pluginDirs('quickstart', 'qs-managed');
  const volume = `qs-m-${randomId()}`;

  afterAll(async () => {
    await docker(['volume', 'rm', '-f', volume]);
    await removeManagedPlugin(dirs.ref);
    if ((await sshfsMountsUnder(dirs.baseDir)).length === 0) rmSync(dirs.baseDir, { recursive: true, force: true });
  }, 300_000);

  it('installs the plugin with the key in its keys directory, creates the first volume and lists it in a container', async () => {
    const remote = await remoteWithFile('qs-managed');
    const block = forTest(quickstart('docker-managed'), env, { driver: dirs.name, volume, remote, keysDir: dirs.keysSource, image: env.image });
    // npm run plugin:install takes the plugin's name and where it builds and keeps state from the environment.
    const out = await run(block, {
      PLUGIN_NAME: dirs.name,
      PLUGIN_DIR: dirs.pluginDir,
      PLUGIN_STATE_SOURCE: dirs.stateSource,
      PLUGIN_BUILDER: 'offline',
      PLUGIN_SKIP_APP_BUILD: '1',
    });
    expect(out.trim().split('\n').at(-1)).toBe('hello.txt');
  }, 900_000);
});

describe('README quick starts: Docker host mode and Podman, one host service', () => {
  const id = randomId();
  const root = path.join(env.dir, 'quickstart', `host-${id}`);
  const driver = `qs-host-${id}`;
  const paths = hostPaths(root, driver);
  const service = new HostService(paths);
  const keysDir = path.join(paths.HOST_CONFIG_DIR, 'keys');
  const dockerVolume = `qs-d-${id}`;
  const podmanVolume = `qs-p-${id}`;
  // Podman refuses a runroot path longer than 50 characters: its storage sits directly in the environment's directory.
  const podDir = path.join(env.dir, `qsp-${id}`);
  const podmanImage = 'localhost/e2e-busybox:latest';
  // Podman reads /etc/containers/containers.conf.d/*.conf after containers.conf; with its own CONTAINERS_CONF (the
  // machine's files stay untouched) it reads that one file only, so the wrapper joins the test's base settings and
  // the drop-ins the README writes, in that order, and runs podman on the test's own storage.
  const confDir = path.join(podDir, 'containers.conf.d');
  const baseConf = path.join(podDir, 'base.conf');
  const podmanArgs = `--root ${podDir}/root --runroot ${podDir}/run --tmpdir ${podDir}/tmp`;
  const podmanPrelude = [
    'shopt -s nullglob',
    `podman() { cat ${baseConf} ${confDir}/*.conf > ${podDir}/containers.conf; CONTAINERS_CONF=${podDir}/containers.conf command podman ${podmanArgs} "$@"; }`,
  ].join('\n');

  /** The block up to and including `npm run host:install`, then the service started as systemd would, then the rest. */
  async function runHostBlock(block: string, prelude = ''): Promise<string> {
    const lines = block.split('\n');
    const at = lines.findIndex((l) => l.trim() === 'npm run host:install');
    expect(at, 'the block installs the host service').toBeGreaterThanOrEqual(0);
    await run(lines.slice(0, at + 1).join('\n'), { ...paths, HOST_SKIP_APP_BUILD: '1' });
    // host:install restarts a running service (systemctl restart): here, stop and start it again.
    await service.stop();
    await service.start(false);
    return run(lines.slice(at + 1).join('\n'), {}, prelude);
  }

  beforeAll(async () => {
    rmSync(root, { recursive: true, force: true });
    rmSync(podDir, { recursive: true, force: true });
    for (const sub of ['root', 'run', 'tmp']) mkdirSync(path.join(podDir, sub), { recursive: true, mode: 0o700 });
    writeFileSync(baseConf, ['[containers]', 'default_ulimits = []', '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', ''].join('\n'));
  });

  afterAll(async () => {
    const podman = (args: string) => execa('bash', ['-c', `${podmanPrelude}\npodman ${args}`], { reject: false, input: '' });
    await podman('rm -af');
    await podman(`volume rm -f ${podmanVolume}`);
    await docker(['volume', 'rm', '-f', dockerVolume]);
    await docker(['volume', 'rm', '-f', podmanVolume]);
    await service.stop();
    if (service.started()) await endedPluginStandIn(paths.HOST_SOCKET, e2eDir());
    for (const m of (await readMounts()).filter((e) => e.mountpoint.startsWith(`${podDir}/`)).reverse()) {
      await execa('umount', ['-l', m.mountpoint], { reject: false });
    }
    await hostScript('remove', paths, { HOST_PURGE: '1' });
    if ((await sshfsMountsUnder(root)).length === 0) rmSync(root, { recursive: true, force: true });
    rmSync(podDir, { recursive: true, force: true });
  }, 300_000);

  it('Docker host mode: host:install, the key, the first volume, a container listing it', async () => {
    const remote = await remoteWithFile('qs-host');
    const out = await runHostBlock(forTest(quickstart('docker-host'), env, { driver, volume: dockerVolume, remote, keysDir, image: env.image }));
    expect(out.trim().split('\n').at(-1)).toBe('hello.txt');
  }, 900_000);

  it('Podman: the same service (installed again), containers.conf.d, the first volume, a container listing it', async () => {
    // Podman needs an image too: the e2e busybox image, exported from the test dockerd.
    const cid = `qs-podman-src-${id}`;
    await dockerOk(['create', '--name', cid, env.image, 'true']);
    try {
      await run(`docker export ${cid} | podman import --change 'CMD ["sh"]' - ${podmanImage} >/dev/null`, {}, podmanPrelude);
    } finally {
      await docker(['rm', '-f', cid]);
    }
    const remote = await remoteWithFile('qs-podman');
    const block = forTest(quickstart('podman'), env, { driver, volume: podmanVolume, remote, keysDir, image: podmanImage, confDir, socket: paths.HOST_SOCKET });
    const out = await runHostBlock(block, podmanPrelude);
    expect(out.trim().split('\n').at(-1)).toBe('hello.txt');

    // One socket, every engine: Docker lists the volume Podman created, with the driver named after the socket.
    const listed = (await dockerOk(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}'])).split('\n');
    expect(listed).toContain(`${driver} ${podmanVolume}`);
    expect(listed).toContain(`${driver} ${dockerVolume}`);
    // ...and a docker volume rm of it removes it in the plugin, for every engine.
    await dockerOk(['volume', 'rm', podmanVolume]);
    expect((await dockerOk(['volume', 'ls', '--format', '{{.Name}}'])).split('\n')).not.toContain(podmanVolume);
  }, 900_000);
});
