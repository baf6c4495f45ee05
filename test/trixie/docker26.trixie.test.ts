// The plugin on Docker Engine 26 (Debian 13's docker.io), next to the e2e project's Docker 20.10: the host-mode
// plugin's essentials (create/mount/write/read/inspect/rm, in-use refusal, a crash and restart), the managed plugin
// installed by `npm run plugin:install`, a single-node Swarm service on a volume, and the cluster-volume trap of
// Docker 23+. scripts/trixie-env.sh runs dockerd 26 in a private namespace with a Debian 13 root; the docker CLI here
// (20.10) talks to it over its socket, the trixie CLI (26) where 20.10 has no words (cluster volumes).
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type LegacyPlugin,
  PLUGIN_ENTRY,
  Resources,
  createVolume,
  docker,
  dockerOk,
  expectOk,
  inspectVolume,
  keyOpts,
  listVolumes,
  loadEnv,
  makeRemoteSubdir,
  readRemote,
  remoteExists,
  removeContainers,
  removeVolume,
  runWith,
  sshfsMountsUnder,
  startContainer,
  uniq,
  waitFor,
} from '../e2e/harness.js';
import { createKeyVolume, freshPluginDirs, pluginDirs, pluginScript, removeManagedPlugin } from '../e2e/managed-plugin.js';
import { docker26, startTrixiePlugin, trixie } from './trixie-env.js';

const env = loadEnv();

beforeAll(async () => {
  // The engine under test: the daemon is 26.x and speaks API 1.45; the trixie CLI is 26 too.
  expect(await dockerOk(['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}}'])).toMatch(/^26\.\d+\.\d+\S* 1\.45$/);
  const cli = await docker26(['version', '--format', '{{.Client.Version}}']);
  expect(cli.stdout, cli.stderr).toMatch(/^26\./);
});

describe('host-mode plugin on Docker 26', () => {
  const res = new Resources();
  let plugin: LegacyPlugin;
  const mounts = (): ReturnType<typeof sshfsMountsUnder> => sshfsMountsUnder(plugin.mountRoot, trixie.mountsFile());

  beforeAll(async () => {
    plugin = await startTrixiePlugin();
  });

  afterAll(async () => {
    const errors = await res.cleanup();
    const left = plugin ? await mounts() : [];
    if (plugin?.running()) await plugin.end();
    expect(errors, 'cleanup errors').toEqual([]);
    expect(left.map((m) => m.mountpoint), 'sshfs mounts left after removing everything').toEqual([]);
  });

  it("runs this repository's dist/ with the trixie root's node inside the namespace", () => {
    const holder = trixie.holderPid();
    // The plugin shares the holder's mount namespace, not this process's, and its program is the root's node.
    expect(readlinkSync(`/proc/${plugin.pid}/ns/mnt`)).toBe(readlinkSync(`/proc/${holder}/ns/mnt`));
    expect(readlinkSync(`/proc/${plugin.pid}/ns/mnt`)).not.toBe(readlinkSync('/proc/self/ns/mnt'));
    const exe = statSync(`/proc/${plugin.pid}/exe`);
    const rootNode = statSync(`/proc/${holder}/root/usr/bin/node`);
    expect([exe.dev, exe.ino]).toEqual([rootNode.dev, rootNode.ino]);
    expect(readFileSync(`/proc/${plugin.pid}/cmdline`, 'utf8').split('\0')).toContain(PLUGIN_ENTRY);
  });

  it('creates, mounts, writes, reads, inspects and removes a volume; the data stays on the server', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'd26');
    const vol = await createVolume(res, plugin, uniq('v26'), keyOpts(remote));
    const before = await inspectVolume(vol);
    expect(before.Driver).toBe(plugin.name);
    expect(before.Status).toMatchObject({ mounted: false });

    const write = await runWith(vol, 'echo written-on-26 > /data/hello.txt && cat /data/hello.txt');
    expect(expectOk(write, plugin)).toBe('written-on-26');
    expect(await readRemote(remote, 'hello.txt')).toBe('written-on-26\n');
    expect(expectOk(await runWith(vol, 'cat /data/hello.txt'), plugin)).toBe('written-on-26');

    // While a container runs on it: mounted (in the namespace's mount table) and Docker can read it through exec.
    const sleeper = await startContainer(res, vol);
    expect((await inspectVolume(vol)).Status).toMatchObject({ mounted: true });
    expect((await mounts()).map((m) => m.mountpoint)).toEqual([path.join(plugin.mountRoot, vol)]);
    expect(await dockerOk(['exec', sleeper, 'cat', '/data/hello.txt'])).toBe('written-on-26');
    await removeContainers(res, [sleeper]);
    await waitFor('the volume to be unmounted', async () => (await mounts()).length === 0, 30_000);
    expect((await inspectVolume(vol)).Status).toMatchObject({ mounted: false });

    await removeVolume(res, vol, plugin);
    expect(await listVolumes(plugin.name)).not.toContain(vol);
    expect(remoteExists(remote, 'hello.txt')).toBe(true);
  });

  it('docker volume rm refuses a volume a container uses, and removes it once the container is gone', async () => {
    const vol = await createVolume(res, plugin, uniq('v26'), keyOpts(env.keyRemoteDir));
    const sleeper = await startContainer(res, vol);
    const rm = await docker(['volume', 'rm', vol]);
    expect(rm.exitCode).not.toBe(0);
    expect(rm.stderr).toMatch(/in use/);
    expect(await listVolumes(plugin.name)).toContain(vol);
    expect(await dockerOk(['exec', sleeper, 'ls', '/data'])).toBeDefined();
    await removeContainers(res, [sleeper]);
    await removeVolume(res, vol, plugin);
  });

  it('after a crash (SIGKILL) and a restart, the running container keeps its mount and new ones mount the volume', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'd26');
    const vol = await createVolume(res, plugin, uniq('v26'), keyOpts(remote));
    expectOk(await runWith(vol, 'echo before-the-crash > /data/marker'), plugin);
    const sleeper = await startContainer(res, vol);
    // Only the plugin's process, as a crash would: its sshfs lives on (the harness's kill() ends the whole group).
    process.kill(plugin.pid, 'SIGKILL');
    await waitFor('the plugin to be gone', () => !plugin.running(), 10_000);
    plugin = await startTrixiePlugin(plugin.name);
    await waitFor('the restarted plugin to reconcile', () => plugin.logs().includes('state reconciled'), 60_000);
    expect(plugin.logs()).toMatch(/1 mount\(s\) adopted/);
    expect(await dockerOk(['exec', sleeper, 'cat', '/data/marker'])).toBe('before-the-crash');
    expect(expectOk(await runWith(vol, 'cat /data/marker && echo after-the-restart >> /data/marker'), plugin)).toBe('before-the-crash');
    expect(await readRemote(remote, 'marker')).toBe('before-the-crash\nafter-the-restart\n');
    expect((await mounts()).map((m) => m.mountpoint)).toEqual([path.join(plugin.mountRoot, vol)]);
    await removeContainers(res, [sleeper]);
    await waitFor('the volume to be unmounted', async () => (await mounts()).length === 0, 30_000);
    await removeVolume(res, vol, plugin);
  });
});

describe('managed plugin (npm run plugin:install) on Docker 26, and a single-node Swarm', () => {
  const dirs = pluginDirs('managed', 'sshfs-t26');
  const volumes: string[] = [];
  let swarm = false;

  beforeAll(async () => {
    freshPluginDirs(dirs);
    const r = await pluginScript('install', {
      PLUGIN_NAME: dirs.name,
      PLUGIN_DIR: dirs.pluginDir,
      PLUGIN_BUILDER: 'offline',
      PLUGIN_SKIP_APP_BUILD: '1', // the global setup has just run `npm run build`
      PLUGIN_STATE_SOURCE: dirs.stateSource,
      PLUGIN_KEYS_SOURCE: dirs.keysSource,
      PLUGIN_DEBUG: '1', // its requests in dockerd's log: the cluster-volume test reads them
    });
    if (r.exitCode !== 0) throw new Error(`plugin.sh install failed (${r.exitCode}):\n${r.stderr}\n${r.stdout}`);
  });

  afterAll(async () => {
    if (swarm) {
      await docker(['service', 'rm', ...(await docker(['service', 'ls', '-q'])).stdout.split('\n').filter(Boolean)]);
      await docker(['swarm', 'leave', '--force']);
    }
    await docker(['container', 'prune', '-f']);
    for (const v of volumes) await docker(['volume', 'rm', '-f', v]);
    await removeManagedPlugin(dirs.ref);
  });

  it('is enabled, and a volume round-trips data through two containers', async () => {
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', dirs.ref])).trim()).toBe('true');
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'm26');
    const vol = uniq('m26');
    volumes.push(vol);
    await createKeyVolume(dirs.ref, vol, remote);
    await dockerOk(['run', '--rm', '--network', 'none', '-v', `${vol}:/remote`, env.image, 'sh', '-c', 'echo managed-26 > /remote/m.txt']);
    expect(await dockerOk(['run', '--rm', '--network', 'none', '-v', `${vol}:/remote`, env.image, 'cat', '/remote/m.txt'])).toBe('managed-26');
    expect(await readRemote(remote, 'm.txt')).toBe('managed-26\n');
    expect((await inspectVolume(vol)).Driver).toBe(dirs.ref);
  });

  it('serves a Swarm service its volume (volume-driver and volume-opt in --mount)', async () => {
    // Inside the namespace's own network: swarm's bridges never reach the host's.
    await dockerOk(['swarm', 'init', '--advertise-addr', trixie.swarmAddr(), '--listen-addr', `${trixie.swarmAddr()}:2377`]);
    swarm = true;
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 's26');
    const vol = uniq('s26');
    volumes.push(vol);
    const service = uniq('svc26');
    await dockerOk([
      'service', 'create', '--detach', '--name', service, '--network', 'host', '--stop-grace-period', '1s',
      '--mount', `type=volume,source=${vol},target=/data,volume-driver=${dirs.ref},volume-opt=sshcmd=${env.keyUser}@${env.sshHost}:${remote},volume-opt=port=${env.sshPort},volume-opt=IdentityFile=id_ed25519`,
      env.image, 'sh', '-c', 'echo from-a-swarm-task > /data/task.txt && exec sleep 600',
    ]);
    await waitFor('the task to write its file', () => remoteExists(remote, 'task.txt'), 120_000, 500);
    expect(await readRemote(remote, 'task.txt')).toBe('from-a-swarm-task\n');
    expect((await dockerOk(['service', 'ps', '--format', '{{.CurrentState}}', service])).split('\n')[0]).toMatch(/^Running/);
    expect((await inspectVolume(vol)).Driver).toBe(dirs.ref);
    await dockerOk(['service', 'rm', service]);
    await waitFor('the task container to stop', async () => (await dockerOk(['ps', '-q', '--filter', `volume=${vol}`])) === '', 60_000);
    await dockerOk(['container', 'prune', '-f']);
    await dockerOk(['volume', 'rm', vol]);
    expect(remoteExists(remote, 'task.txt')).toBe(true);
  });

  it('the cluster-volume trap: --type mount --scope multi stays "pending creation", volume rm leaves it, rm -f removes it', async () => {
    expect(swarm, 'needs the swarm of the test before').toBe(true);
    const vol = uniq('cv26');
    volumes.push(vol);
    const create = await docker26([
      'volume', 'create', '-d', dirs.ref, '--type', 'mount', '--scope', 'multi', '--sharing', 'all',
      '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${env.keyRemoteDir}`, '-o', `port=${env.sshPort}`, vol,
    ]);
    expect(create.exitCode, create.stderr).toBe(0);
    // The line of VOL in `docker volume ls --cluster` (its --format is ignored there), '' once it is gone.
    const status = async (): Promise<string> => {
      const line = (await docker26(['volume', 'ls', '--cluster'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === vol);
      return line === undefined ? '' : `${vol} ${line.trim().split(/\s{2,}/).at(-1)}`;
    };
    // Swarm waits for a CSI plugin to create it; this plugin is none, so it never is.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    expect(await status()).toBe(`${vol} pending creation`);
    const rm = await docker26(['volume', 'rm', vol]);
    expect(rm.exitCode, rm.stderr).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    expect(await status()).toBe(`${vol} pending creation`);
    // The plugin is never asked to create it, only (Get) whether it knows the name: its DEBUG lines go to dockerd's
    // log, which has the Create of the volume above. Swarm's CSI manager keeps retrying and says why.
    const daemonLog = readFileSync(path.join(env.dir, 'dockerd.log'), 'utf8');
    expect(daemonLog).toContain(`/VolumeDriver.Create Name=\\"${volumes[0]}\\"`);
    expect(daemonLog).toContain(`/VolumeDriver.Get Name=\\"${vol}\\" -> Err: no such volume`);
    expect(daemonLog).not.toMatch(new RegExp(`/VolumeDriver\\.(Create|Mount|Remove) Name=\\\\"${vol}`));
    expect(daemonLog).toContain('volume creation failed: plugin does not provide \\"csicontroller\\" capability');
    const force = await docker26(['volume', 'rm', '-f', vol]);
    expect(force.exitCode, force.stderr).toBe(0);
    await waitFor('the cluster volume to be gone', async () => (await status()) === '', 30_000);
  });
});
