// The CSI plugin (`PLUGIN_CONFIG=csi npm run plugin:install`) as a managed plugin of Docker 28.5 from a Debian forky
// root (TRIXIE_SUITE=forky scripts/trixie-env.sh: this file brings that environment up itself, in .e2e-forky; the
// rest of the trixie project stays on Docker 26). Docker 26 and 27's Swarm cannot call any CSI plugin
// (moby/moby#48133: "does not implement PluginAddr", fixed in Docker 28.2), hence the newer engine here:
// - the plugin driven as Swarm's agent drives it: gRPC calls on the plugin's own socket (CreateVolume with the
//   password as a secret, NodePublishVolume to /data/published/<id>, a plugin restart while published,
//   NodeUnpublishVolume, DeleteVolume), a container binding the published path from the host side as Swarm's
//   executor does, and a second plugin instance as a second node: real sshfs, FUSE, propagated mount and link;
// - the Swarm flows themselves: a single-node swarm inside the environment's own network namespace, volumes with
//   their credential as a Swarm secret, a service on `--mount type=cluster`, pause, a plugin restart while published,
//   `docker service rm` unpublishing it, a volume drain (with the node paused, see there), `docker volume rm`; the
//   credential never in `docker volume inspect`;
// - a two-node swarm (TRIXIE_NODES=2: a second dockerd in namespaces of its own): a node drain moves the task with its
//   data to the other node, a plugin restart while published, volume pause and drain, rm (see the last describe).
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import path from 'node:path';
import { credentials, loadPackageDefinition, type Client, type GrpcObject, type ServiceError } from '@grpc/grpc-js';
import { afterAll, assert, beforeAll, describe, expect, it } from 'vitest';
import { csiPackage } from '../../adapter/csi/schema.js';
import { JournalFile } from '../../state/journal-file.js';
import { JOURNAL_FILE_NAME, STATE_FILE_NAME, type StateChange } from '../../state/lowdb-store.js';
import { type CmdResult, docker, dockerOk, type E2EEnv, loadEnv, makeRemoteSubdir, readMounts, readRemote, remoteExists, uniq, waitFor } from '../e2e/harness.js';
import { freshPluginDirs, pluginDirs, type PluginDirs, pluginScript, removeManagedPlugin } from '../e2e/managed-plugin.js';
import { inNs, trixie, upSuiteEnvironment } from './trixie-env.js';

/** The forky environment (set once it is up). */
let env: E2EEnv;
let downForky: (() => Promise<void>) | undefined;

beforeAll(async () => {
  downForky = await upSuiteEnvironment('forky', 2);
  env = loadEnv();
}, 1_800_000);

afterAll(async () => {
  await downForky?.();
}, 600_000);

/** The forky docker CLI (28.5): the host's 20.10 one knows neither cluster volumes nor --mount type=cluster. */
function dk(args: string[], input?: string): Promise<CmdResult> {
  return inNs(['docker', ...args], { env: { DOCKER_HOST: env.dockerHost, DOCKER_CLI_HINTS: 'false' }, ...(input !== undefined ? { input } : {}) });
}

async function dkok(args: string[], input?: string): Promise<string> {
  const r = await dk(args, input);
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** VOL's status column in `docker volume ls --cluster` ('' once it is gone; its --format is ignored there). */
async function clusterStatus(vol: string): Promise<string> {
  const line = (await dk(['volume', 'ls', '--cluster'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === vol);
  return line === undefined ? '' : (line.trim().split(/\s{2,}/).at(-1) ?? '');
}

/** The plugin's sshfs mount of VOL, as the environment's mount namespace sees it (under the propagated mount). */
async function mountedIn(vol: string): Promise<boolean> {
  return (await readMounts(trixie.mountsFile())).some((m) => m.fstype === 'fuse.sshfs' && m.mountpoint.endsWith(`/.mounts/${vol}`));
}

async function taskStates(service: string): Promise<string[]> {
  return (await dk(['service', 'ps', '--format', '{{.DesiredState}} {{.CurrentState}}', service])).stdout.split('\n').filter(Boolean);
}

/** A CSI client on SOCKET, its calls as promises (what Swarm's manager and agent call). */
function csiClient(socket: string, service: 'Controller' | 'Node') {
  const v1 = (loadPackageDefinition(csiPackage()).csi as GrpcObject).v1 as GrpcObject;
  const Ctor = v1[service] as unknown as new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;
  const client = new Ctor(`unix://${socket}`, credentials.createInsecure());
  const call = (method: string, request: object) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      (client as unknown as Record<string, (r: object, o: object, cb: (e: ServiceError | null, v: Record<string, unknown>) => void) => void>)[method]!(
        request,
        { deadline: Date.now() + 60_000 },
        (error, value) => (error ? reject(error) : resolve(value)),
      ),
    );
  return { call, close: () => client.close() };
}

/**
 * A short link to the socket of the managed plugin ID: dockerd makes it in /run/docker/plugins/<id>/ in the namespace,
 * bound from TRIXIE_SOCKET_DIR here, a path longer than a Unix socket's 107 bytes.
 */
function linkSocket(id: string): string {
  const link = path.join(env.dir, `csi-${id.slice(0, 8)}.sock`);
  rmSync(link, { force: true });
  symlinkSync(path.join(env.raw.TRIXIE_SOCKET_DIR ?? '', id, 'sshfs-csi.sock'), link);
  return link;
}

/** Where Swarm's executor finds /data/published/SWARMID of the managed plugin ID: its propagated mount on the host. */
const hostPublishedOf = (id: string, swarmId: string) => path.join(env.dir, 'docker-data', 'plugins', id, 'propagated-mount', swarmId);

/** The volumes in the plugin's state in STATEDIR: its snapshot with its journal's changes applied (read only). */
async function stateVolumes(stateDir: string): Promise<string[]> {
  const snapshot = JSON.parse(readFileSync(path.join(stateDir, STATE_FILE_NAME), 'utf8')) as { volumes: Record<string, unknown> };
  const names = new Set(Object.keys(snapshot.volumes));
  const journal = new JournalFile<StateChange>(path.join(stateDir, JOURNAL_FILE_NAME), (c): c is StateChange => typeof c === 'object' && c !== null);
  for (const change of (await journal.read()).changes) {
    if ('put' in change) names.add(change.put.name);
    else names.delete(change.delete);
  }
  return [...names];
}

/** The engine's version as [major, minor]. */
async function engineVersion(): Promise<[number, number]> {
  const [major = 0, minor = 0] = (await dockerOk(['version', '--format', '{{.Server.Version}}'])).split('.').map((n) => parseInt(n, 10));
  return [major, minor];
}

describe('Swarm cluster volumes through the CSI plugin on Docker 28.5', () => {
  let dirs: PluginDirs;
  const services: string[] = [];
  const volumes: string[] = [];
  const secrets: string[] = [];

  beforeAll(async () => {
    const [major, minor] = await engineVersion();
    // Swarm calls CSI plugins from Docker 28.2 on (moby/moby#48133): an older engine here is a broken environment.
    if (major < 28 || (major === 28 && minor < 2)) throw new Error(`the forky root's dockerd is ${major}.${minor}: these tests need Docker >= 28.2`);
    dirs = pluginDirs('csi', 'sshfs-csi');
    freshPluginDirs(dirs);
    const r = await pluginScript('install', {
      PLUGIN_CONFIG: 'csi',
      PLUGIN_NAME: dirs.name,
      PLUGIN_DIR: dirs.pluginDir,
      PLUGIN_BUILDER: 'offline',
      PLUGIN_SKIP_APP_BUILD: '1',
      PLUGIN_STATE_SOURCE: dirs.stateSource,
      PLUGIN_KEYS_SOURCE: dirs.keysSource,
      PLUGIN_DEBUG: '1',
    });
    if (r.exitCode !== 0) throw new Error(`plugin.sh install failed (${r.exitCode}):\n${r.stderr}\n${r.stdout}`);
    // Inside the namespace's own network: swarm's bridges never reach the host's.
    await dkok(['swarm', 'init', '--advertise-addr', trixie.swarmAddr(), '--listen-addr', `${trixie.swarmAddr()}:2377`]);
  });

  afterAll(async () => {
    for (const s of services) await dk(['service', 'rm', s]);
    for (const v of volumes) await dk(['volume', 'rm', '-f', v]);
    for (const s of secrets) await dk(['secret', 'rm', s]);
    await dk(['swarm', 'leave', '--force']);
    await docker(['container', 'prune', '-f']);
    await removeManagedPlugin(dirs.ref);
  });

  it('is installed as a CSI plugin (controller and node)', async () => {
    const types = await docker(['plugin', 'inspect', '-f', '{{json .Config.Interface.Types}}', dirs.ref]);
    expect(types.stdout).toContain('docker.csicontroller/1.0');
    expect(types.stdout).toContain('docker.csinode/1.0');
  });

  it('driven as Swarm drives it: secret password, publish, a container on the published path, restart, unpublish, delete', async () => {
    const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser, 'csig');
    const vol = uniq('g');
    const id = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', dirs.ref])).trim();
    const socket = linkSocket(id);
    // Swarm publishes to /data/published/<its volume id> in the plugin; its executor binds that path from the host
    // side, where the propagated mount is <data root>/plugins/<id>/propagated-mount (the plugin's ScopedPath).
    const swarmId = `t${Date.now().toString(36)}e2e`;
    const hostPublished = hostPublishedOf(id, swarmId);
    const parameters = { sshcmd: `${env.pwUser}@${env.sshHost}:${remote}`, port: String(env.sshPort) };
    const controller = csiClient(socket, 'Controller');
    const node = csiClient(socket, 'Node');
    const publish = { volume_id: vol, target_path: `/data/published/${swarmId}`, volume_capability: { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }, volume_context: parameters, secrets: { password: env.password } };
    try {
      const created = await controller.call('CreateVolume', { name: vol, volume_capabilities: [publish.volume_capability], parameters, secrets: { password: env.password } });
      expect(created.volume).toMatchObject({ volume_id: vol, volume_context: parameters });
      await node.call('NodePublishVolume', publish);
      expect(await mountedIn(vol)).toBe(true);
      await dockerOk(['run', '--rm', '--network', 'none', '--mount', `type=bind,source=${hostPublished},target=/data`, env.image, 'sh', '-c', 'echo published > /data/p.txt']);
      expect(await readRemote(remote, 'p.txt')).toBe('published\n');

      // Restart while published: Swarm would not publish again; the plugin mounts it again from its own state.
      await dockerOk(['plugin', 'disable', '-f', dirs.ref]);
      await dockerOk(['plugin', 'enable', dirs.ref]);
      // A new container on the published path (a new task) reads the server again, without any new publish.
      const readThroughPublished = async () =>
        (await docker(['run', '--rm', '--network', 'none', '--mount', `type=bind,source=${hostPublished},target=/data`, env.image, 'cat', '/data/p.txt'])).stdout;
      await waitFor('the plugin to mount the published volume again', async () => (await readThroughPublished()) === 'published', 90_000, 2000);
      expect(readFileSync(path.join(env.dir, 'dockerd.log'), 'utf8')).toContain(`volume ${vol}: published at /data/published/${swarmId} before the restart; mounted again`);

      // The client reconnects to the new socket, as Swarm's does.
      await node.call('NodeUnpublishVolume', { volume_id: vol, target_path: publish.target_path });
      await waitFor('the unpublished volume to be unmounted', async () => !(await mountedIn(vol)), 30_000, 500);
      // The link is gone: a bind of the published path fails (--mount, like Swarm's executor: -v would make a directory).
      const after = await docker(['run', '--rm', '--network', 'none', '--mount', `type=bind,source=${hostPublished},target=/data`, env.image, 'true']);
      expect(after.exitCode).not.toBe(0);
      expect(after.stderr).toMatch(/does not exist/);
      await controller.call('DeleteVolume', { volume_id: vol });
      // Forgotten: a publish without the options to create it again finds no such volume.
      const gone = await node.call('NodePublishVolume', { ...publish, volume_context: {}, secrets: {} }).then(
        () => undefined,
        (error: ServiceError) => error,
      );
      expect(gone?.code).toBe(5); // NOT_FOUND
      expect(remoteExists(remote, 'p.txt')).toBe(true);
      // The password went to sshfs on stdin and into the plugin's 0600 state only: never into dockerd's log.
      expect(readFileSync(path.join(env.dir, 'dockerd.log'), 'utf8')).not.toContain(env.password);
    } finally {
      controller.close();
      node.close();
      rmSync(socket, { force: true });
    }
  });

  it('follows to another node: a second plugin instance (node B) publishes a volume only node A created, and reads its data', async () => {
    // Two managed plugins from the same build, each with its own state: two nodes' plugins, as Swarm would call them.
    // dockerd keeps one copy of a rootfs: the second one gets a marker file, so its layer differs.
    const nodeB = uniq('sshfs-csi-b');
    const stateB = path.join(dirs.baseDir, 'state-b');
    const dirB = path.join(dirs.baseDir, 'plugin-b');
    const copy = await execa('cp', ['-a', dirs.pluginDir, dirB], { reject: false });
    expect(copy.exitCode, copy.stderr).toBe(0);
    writeFileSync(path.join(dirB, 'rootfs', 'etc', 'e2e-node'), 'node-b\n');
    await dockerOk(['plugin', 'create', nodeB, dirB]);
    try {
      await dockerOk(['plugin', 'set', nodeB, `state.source=${stateB}`, `keys.source=${dirs.keysSource}`, 'NODE_ID=node-b']);
      mkdirSync(stateB, { recursive: true, mode: 0o700 });
      await dockerOk(['plugin', 'enable', nodeB]);
      const idA = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', dirs.ref])).trim();
      const idB = (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', nodeB])).trim();
      const [a, b] = [linkSocket(idA), linkSocket(idB)];
      const controllerA = csiClient(a, 'Controller');
      const [nodeClientA, nodeClientB] = [csiClient(a, 'Node'), csiClient(b, 'Node')];
      const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser, 'csim');
      const vol = uniq('m');
      const swarmId = `m${Date.now().toString(36)}e2e`;
      const parameters = { sshcmd: `${env.pwUser}@${env.sshHost}:${remote}`, port: String(env.sshPort) };
      const publish = { volume_id: vol, target_path: `/data/published/${swarmId}`, volume_capability: { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }, volume_context: parameters, secrets: { password: env.password } };
      const bind = (id: string) => ['--mount', `type=bind,source=${hostPublishedOf(id, swarmId)},target=/data`];
      try {
        expect((await nodeClientB.call('NodeGetInfo', {})).node_id).toBe('node-b');
        await controllerA.call('CreateVolume', { name: vol, volume_capabilities: [publish.volume_capability], parameters, secrets: { password: env.password } });
        await nodeClientA.call('NodePublishVolume', publish);
        await dockerOk(['run', '--rm', '--network', 'none', ...bind(idA), env.image, 'sh', '-c', 'echo written-on-a > /data/m.txt']);
        // Drained from A, published on B: B creates the volume from the context and secrets Swarm passes along.
        await nodeClientA.call('NodeUnpublishVolume', { volume_id: vol, target_path: publish.target_path });
        await nodeClientB.call('NodePublishVolume', publish);
        expect(await dockerOk(['run', '--rm', '--network', 'none', ...bind(idB), env.image, 'cat', '/data/m.txt'])).toBe('written-on-a');
        await nodeClientB.call('NodeUnpublishVolume', { volume_id: vol, target_path: publish.target_path });
        await controllerA.call('DeleteVolume', { volume_id: vol });
        expect(await readRemote(remote, 'm.txt')).toBe('written-on-a\n');
      } finally {
        for (const c of [controllerA, nodeClientA, nodeClientB]) c.close();
        rmSync(a, { force: true });
        rmSync(b, { force: true });
      }
    } finally {
      await removeManagedPlugin(`${nodeB}:latest`);
    }
  });

  it('a service follows its volume: password from a Swarm secret, pause, restart while published, service rm unpublishes, volume rm', async () => {
    const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser, 'csi');
    const vol = uniq('cv');
    const secret = uniq('pw');
    const service = uniq('csvc');
    volumes.push(vol);
    secrets.push(secret);
    // --secret takes the secret's id (swarmkit looks volumes' secrets up by id): `docker secret create` prints it.
    const secretId = (await dkok(['secret', 'create', secret, '-'], env.password)).trim();
    await dkok([
      'volume', 'create', '-d', dirs.name, '--type', 'mount', '--scope', 'multi', '--sharing', 'all',
      '-o', `sshcmd=${env.pwUser}@${env.sshHost}:${remote}`, '-o', `port=${env.sshPort}`,
      '--secret', `password=${secretId}`, vol,
    ]);
    await waitFor('the volume to be created by the plugin', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
    const inspect = await dkok(['volume', 'inspect', vol]);
    expect(inspect).not.toContain(env.password);
    expect(inspect).toContain(secretId); // Docker records the secret's id, never its value

    services.push(service);
    await dkok([
      'service', 'create', '--detach', '--name', service, '--network', 'host', '--stop-grace-period', '1s',
      '--mount', `type=cluster,src=${vol},dst=/data`,
      env.image, 'sh', '-c', 'echo "from task $(hostname)" >> /data/tasks.txt && exec sleep 600',
    ]);
    await waitFor('the task to write through the cluster volume', () => remoteExists(remote, 'tasks.txt'), 180_000, 1000);
    expect(await readRemote(remote, 'tasks.txt')).toMatch(/^from task /);
    expect(await clusterStatus(vol)).toBe('in use (1 node)');
    expect(await mountedIn(vol)).toBe(true);

    // pause: no new tasks may use it, the running one goes on.
    await dkok(['volume', 'update', '--availability', 'pause', vol]);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect((await taskStates(service))[0]).toMatch(/^Running Running/);
    await dkok(['volume', 'update', '--availability', 'active', vol]);

    // A plugin restart while published: Swarm does not publish again, the plugin mounts it again from its own state.
    const disable = await docker(['plugin', 'disable', '-f', dirs.ref]);
    expect(disable.exitCode, disable.stderr).toBe(0);
    const enable = await docker(['plugin', 'enable', dirs.ref]);
    expect(enable.exitCode, enable.stderr).toBe(0);
    await waitFor('the plugin to mount the published volume again', () => mountedIn(vol), 90_000, 1000);
    // A new task (the old one's bind died with the old mount) reaches the server through the restored publication.
    await dkok(['service', 'update', '--detach', '--force', service]);
    await waitFor('the new task to write', async () => (await readRemote(remote, 'tasks.txt')).split('\n').filter(Boolean).length >= 2, 180_000, 1000);

    // No task left: Swarm unpublishes the volume from the node (NodeUnpublishVolume: the link and the mount go).
    await dkok(['service', 'rm', service]);
    await waitFor('the volume to be no longer in use', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
    await waitFor('the volume to be unpublished', async () => !(await mountedIn(vol)), 60_000, 1000);
    expect(readFileSync(path.join(env.dir, 'dockerd.log'), 'utf8')).toContain(`NodeUnpublishVolume ${vol}: /data/published/`);
    await dkok(['volume', 'rm', vol]);
    await waitFor('the cluster volume to be deleted', async () => (await clusterStatus(vol)) === '', 120_000, 1000);
    // The remote files stay; the plugin forgot the volume (its state names it no more).
    expect(remoteExists(remote, 'tasks.txt')).toBe(true);
    expect(await stateVolumes(dirs.stateSource)).not.toContain(vol);
  });

  // Drain on one node: Swarm rejects the task ("attached to volume which is being drained"), but unpublishes the
  // volume only once no task that wants it is placed on the node, and that is swarmkit's scheduler, not the plugin. It
  // marks a node's publication for NodeUnpublishVolume only in freeVolumes (manager/scheduler/volumes.go), which runs
  // only at the end of applySchedulingDecisions (scheduler.go) and counts the volume's reservations per node then. The
  // replacement task is first placed on a node (scheduleNTasksOnNodes reserves its volumes there), then refused since
  // the volume is not active; its reservation is released only after freeVolumes ran. With the only node active, it
  // always lands there and the volume stays published (seen: "in use (1 node)" for 140 s, no NodeUnpublishVolume).
  // With the node paused there is nowhere to place the replacement, no reservation, and Swarm unpublishes it (seen
  // too when the node is paused only after the drain: "created" 3 s later).
  it('drain with the node paused: the task is rejected and the volume unpublished', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'csid');
    const vol = uniq('cd');
    const service = uniq('dsvc');
    volumes.push(vol);
    await dkok([
      'volume', 'create', '-d', dirs.name, '--type', 'mount', '--scope', 'multi', '--sharing', 'all',
      '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`, '-o', `port=${env.sshPort}`, '-o', 'IdentityFile=id_ed25519', vol,
    ]);
    await waitFor('the volume to be created by the plugin', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
    services.push(service);
    await dkok([
      'service', 'create', '--detach', '--name', service, '--network', 'host', '--stop-grace-period', '1s',
      '--mount', `type=cluster,src=${vol},dst=/data`, env.image, 'sh', '-c', 'echo drained > /data/d.txt && exec sleep 600',
    ]);
    await waitFor('the task to write', () => remoteExists(remote, 'd.txt'), 180_000, 1000);
    const self = (await dkok(['info', '--format', '{{.Swarm.NodeID}}'])).trim();
    await dkok(['node', 'update', '--availability', 'pause', self]);
    try {
      await dkok(['volume', 'update', '--availability', 'drain', vol]);
      await waitFor('no task to run on the drained volume', async () => (await taskStates(service)).every((s) => s.split(' ')[1] !== 'Running'), 120_000, 1000);
      expect(await dkok(['service', 'ps', '--no-trunc', '--format', '{{.Error}}', service])).toContain('attached to volume which is being drained');
      await waitFor('the drained volume to be unpublished', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
      await waitFor('the drained volume to be unmounted', async () => !(await mountedIn(vol)), 60_000, 1000);
      await dkok(['service', 'rm', service]);
      await dkok(['volume', 'rm', vol]);
      await waitFor('the drained volume to be deleted', async () => (await clusterStatus(vol)) === '', 120_000, 1000);
      expect(await readRemote(remote, 'd.txt')).toBe('drained\n');
    } finally {
      await dkok(['node', 'update', '--availability', 'active', self]);
    }
  });

  it('a private key given as a Swarm secret: written by the plugin, never shown by Docker', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'csik');
    const vol = uniq('ck');
    const secret = uniq('key');
    const service = uniq('ksvc');
    volumes.push(vol);
    secrets.push(secret);
    const key = readFileSync(env.keyFile, 'utf8');
    const secretId = (await dkok(['secret', 'create', secret, '-'], key)).trim();
    await dkok([
      'volume', 'create', '-d', dirs.name, '--type', 'mount', '--scope', 'multi', '--sharing', 'all',
      '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`, '-o', `port=${env.sshPort}`, '--secret', `key=${secretId}`, vol,
    ]);
    await waitFor('the volume to be created by the plugin', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
    const body = key.split('\n')[1] ?? 'no key body';
    expect(await dkok(['volume', 'inspect', vol])).not.toContain(body);
    services.push(service);
    await dkok([
      'service', 'create', '--detach', '--name', service, '--network', 'host', '--stop-grace-period', '1s',
      '--mount', `type=cluster,src=${vol},dst=/data`, env.image, 'sh', '-c', 'echo keyed > /data/k.txt && exec sleep 600',
    ]);
    await waitFor('the task to write with the key', () => remoteExists(remote, 'k.txt'), 180_000, 1000);
    expect(await readRemote(remote, 'k.txt')).toBe('keyed\n');
    // A credential as -o is refused: it would be in Docker's records.
    const refused = uniq('cr');
    volumes.push(refused);
    await dkok(['volume', 'create', '-d', dirs.name, '--type', 'mount', '--scope', 'multi', '--sharing', 'all', '-o', `sshcmd=${env.pwUser}@${env.sshHost}:${remote}`, '-o', 'password=visible', refused]);
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    expect(await clusterStatus(refused)).toBe('pending creation');
    const daemonLog = readFileSync(`${env.dir}/dockerd.log`, 'utf8');
    expect(daemonLog).toMatch(/must be a Swarm secret/);
    expect(daemonLog).not.toContain(body);
    expect(daemonLog).not.toContain(env.password);
  });
});

/** One dockerd of the multi-node swarm, as the tests reach it from here. */
interface SwarmNode {
  label: string;
  dockerHost: string;
  /** Its namespace's mount table (where its plugin's sshfs mounts show). */
  mountsFile: string;
  /** Its dockerd's log (the plugin's lines are in it). */
  log: string;
  /** Its Swarm node id (once it joined). */
  id: string;
}

/** The forky docker CLI against NODE's dockerd. */
function dkAt(node: SwarmNode, args: string[], input?: string): Promise<CmdResult> {
  return inNs(['docker', ...args], { env: { DOCKER_HOST: node.dockerHost, DOCKER_CLI_HINTS: 'false' }, ...(input !== undefined ? { input } : {}) });
}

async function dkokAt(node: SwarmNode, args: string[], input?: string): Promise<string> {
  const r = await dkAt(node, args, input);
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')} on ${node.label} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

async function mountedOn(node: SwarmNode, vol: string): Promise<boolean> {
  return (await readMounts(node.mountsFile)).some((m) => m.fstype === 'fuse.sshfs' && m.mountpoint.endsWith(`/.mounts/${vol}`));
}

// Two dockerds 28.5, each in network, mount and UTS namespaces of its own (TRIXIE_NODES=2), one swarm: node 1
// manages, node 2 works; each runs the CSI plugin created from the same build. The key reaches the plugins only as a
// Swarm secret. What Swarm does with the volume's and the nodes' availability is in swarmkit's scheduler
// (manager/scheduler/volumes.go, scheduler.go; see the README's cluster-volume section): a node drain moves the task
// and unpublishes the volume from the drained node; a volume drain rejects the tasks, and unpublishes the volume only
// once the scheduler places no task that wants it on that node (here: every node paused).
describe('a cluster volume on a two-node swarm follows its service (Docker 28.5)', () => {
  let dirs: PluginDirs;
  let nodes: SwarmNode[] = [];
  const service = uniq('msvc');
  const vol = uniq('mv');
  const secret = uniq('mkey');

  /** The nodes of the service's tasks that run (desired and current state running), by Swarm node id. */
  async function runningOn(): Promise<string[]> {
    const ids = (await dkokAt(nodes[0]!, ['service', 'ps', '-q', '--filter', 'desired-state=running', service])).split('\n').filter(Boolean);
    const out: string[] = [];
    for (const id of ids) {
      const [node = '', state = ''] = (await dkokAt(nodes[0]!, ['inspect', '--format', '{{.NodeID}} {{.Status.State}}', id])).split(' ');
      if (state === 'running') out.push(node);
    }
    return out;
  }
  const byId = (id: string) => nodes.find((n) => n.id === id) ?? assert.fail(`no node ${id}`);
  const logs = () => nodes.map((n) => readFileSync(n.log, 'utf8')).join('\n');

  beforeAll(async () => {
    expect(trixie.nodes()).toBeGreaterThanOrEqual(2);
    const n2 = trixie.node(2);
    nodes = [
      { label: 'node 1', dockerHost: env.dockerHost, mountsFile: trixie.mountsFile(), log: path.join(env.dir, 'dockerd.log'), id: '' },
      { label: 'node 2', dockerHost: n2.dockerHost, mountsFile: n2.mountsFile, log: path.join(env.dir, 'node2', 'dockerd.log'), id: '' },
    ];
    dirs = pluginDirs('csi-multi', 'sshfs-csi');
    freshPluginDirs(dirs);
    const common = { PLUGIN_CONFIG: 'csi', PLUGIN_NAME: dirs.name, PLUGIN_DIR: dirs.pluginDir, PLUGIN_KEYS_SOURCE: dirs.keysSource, PLUGIN_DEBUG: '1' };
    // Node 1 builds and installs it; node 2 creates its plugin from the same build (its own state directory).
    const installed = await pluginScript('install', { ...common, PLUGIN_BUILDER: 'offline', PLUGIN_SKIP_APP_BUILD: '1', PLUGIN_STATE_SOURCE: dirs.stateSource });
    if (installed.exitCode !== 0) throw new Error(`plugin.sh install on node 1 failed (${installed.exitCode}):\n${installed.stderr}`);
    for (const step of ['create', 'enable']) {
      const r = await pluginScript(step, { ...common, PLUGIN_STATE_SOURCE: `${dirs.stateSource}-node2`, DOCKER_HOST: n2.dockerHost });
      if (r.exitCode !== 0) throw new Error(`plugin.sh ${step} on node 2 failed (${r.exitCode}):\n${r.stderr}`);
    }
    await dkokAt(nodes[0]!, ['swarm', 'init', '--advertise-addr', trixie.swarmAddr(), '--listen-addr', `${trixie.swarmAddr()}:2377`]);
    const token = (await dkokAt(nodes[0]!, ['swarm', 'join-token', '-q', 'worker'])).trim();
    await dkokAt(nodes[1]!, ['swarm', 'join', '--advertise-addr', n2.addr, '--listen-addr', `${n2.addr}:2377`, '--token', token, `${trixie.swarmAddr()}:2377`]);
    for (const node of nodes) node.id = (await dkokAt(node, ['info', '--format', '{{.Swarm.NodeID}}'])).trim();
    // The manager places a task only where the node reported the CSI plugin (NodeGetInfo): both must have.
    for (const node of nodes) {
      await waitFor(`${node.label} to report the CSI plugin`, async () => (await dkokAt(nodes[0]!, ['node', 'inspect', '--format', '{{json .Description.CSIInfo}}', node.id])).includes(dirs.ref), 120_000, 1000);
    }
  }, 600_000);

  afterAll(async () => {
    if (nodes.length === 0) return;
    await dkAt(nodes[0]!, ['service', 'rm', service]);
    await dkAt(nodes[0]!, ['volume', 'rm', '-f', vol]);
    await dkAt(nodes[0]!, ['secret', 'rm', secret]);
    await dkAt(nodes[1]!, ['swarm', 'leave', '--force']);
    await dkAt(nodes[0]!, ['swarm', 'leave', '--force']);
    for (const node of nodes) {
      await dkAt(node, ['container', 'prune', '-f']);
      await dkAt(node, ['plugin', 'disable', '-f', dirs.ref]);
      await dkAt(node, ['plugin', 'rm', '-f', dirs.ref]);
    }
  }, 300_000);

  it('the task writes on one node; a plugin restart there while published; a node drain moves it with its data; pause; a volume drain; rm', async () => {
    const started = Date.now();
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'csimn');
    const key = readFileSync(env.keyFile, 'utf8');
    const keyBody = key.split('\n')[1] ?? 'no key body';
    // Every node reaches the sshd at node 1's bridge address (its loopback is node 1's own).
    const secretId = (await dkokAt(nodes[0]!, ['secret', 'create', secret, '-'], key)).trim();
    await dkokAt(nodes[0]!, [
      'volume', 'create', '-d', dirs.ref, '--type', 'mount', '--scope', 'multi', '--sharing', 'all',
      '-o', `sshcmd=${env.keyUser}@${trixie.swarmAddr()}:${remote}`, '-o', `port=${env.sshPort}`, '--secret', `key=${secretId}`, vol,
    ]);
    await waitFor('the volume to be created by the plugin', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
    expect(await dkokAt(nodes[0]!, ['volume', 'inspect', vol])).not.toContain(keyBody);

    // Each task records what it found (the earlier tasks' lines), then adds its own line.
    await dkokAt(nodes[0]!, [
      'service', 'create', '--detach', '--name', service, '--network', 'host', '--stop-grace-period', '1s', '--env', 'NODE={{.Node.ID}}',
      '--mount', `type=cluster,src=${vol},dst=/data`,
      env.image, 'sh', '-c', 'cat /data/log.txt > "/data/seen-$NODE.txt" 2>/dev/null; echo "written on $NODE" >> /data/log.txt && exec sleep 600',
    ]);
    await waitFor('the task to write through the cluster volume', () => remoteExists(remote, 'log.txt'), 180_000, 1000);
    const [firstId = ''] = await runningOn();
    const a = byId(firstId);
    const b = nodes.find((n) => n !== a)!;
    expect(await readRemote(remote, 'log.txt')).toBe(`written on ${a.id}\n`);
    expect(await mountedOn(a, vol)).toBe(true);
    expect(await mountedOn(b, vol)).toBe(false);

    // A plugin restart on the task's node while published: the plugin mounts it again from its own state.
    await dkokAt(a, ['plugin', 'disable', '-f', dirs.ref]);
    await dkokAt(a, ['plugin', 'enable', dirs.ref]);
    // (The dead mount stays listed until the plugin's recovery unmounts it: its log line tells the mount is new.)
    const again = new RegExp(`volume ${vol}: published at /data/published/\\w+ before the restart; mounted again`);
    await waitFor(`the plugin on ${a.label} to mount the published volume again`, () => again.test(readFileSync(a.log, 'utf8')), 90_000, 1000);
    expect(await mountedOn(a, vol)).toBe(true);

    // Drain the task's node: Swarm moves the task to the other node, which publishes the volume and reads what the
    // first task wrote; the drained node unpublishes it (NodeUnpublishVolume: link and mount gone).
    await dkokAt(nodes[0]!, ['node', 'update', '--availability', 'drain', a.id]);
    await waitFor(`the task to run on ${b.label}`, async () => (await runningOn()).join() === b.id, 120_000, 1000);
    await waitFor(`the task on ${b.label} to have read the data`, () => remoteExists(remote, `seen-${b.id}.txt`), 60_000, 1000);
    expect(await readRemote(remote, `seen-${b.id}.txt`)).toBe(`written on ${a.id}\n`);
    expect(await readRemote(remote, 'log.txt')).toBe(`written on ${a.id}\nwritten on ${b.id}\n`);
    await waitFor(`${a.label} to unpublish the volume`, async () => !(await mountedOn(a, vol)), 120_000, 1000);
    expect(readFileSync(a.log, 'utf8')).toContain(`NodeUnpublishVolume ${vol}: /data/published/`);
    expect(await mountedOn(b, vol)).toBe(true);
    await dkokAt(nodes[0]!, ['node', 'update', '--availability', 'active', a.id]);

    // Volume paused: the running task goes on, a new one is not placed; active again, it is.
    await dkokAt(nodes[0]!, ['volume', 'update', '--availability', 'pause', vol]);
    await dkokAt(nodes[0]!, ['service', 'scale', '--detach', `${service}=2`]);
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    expect(await runningOn()).toEqual([b.id]);
    await dkokAt(nodes[0]!, ['volume', 'update', '--availability', 'active', vol]);
    await waitFor('the second task to run once the volume is active', async () => (await runningOn()).length === 2, 120_000, 1000);

    // Volume drained with every node paused: Swarm rejects every task using it and, having nowhere to place their
    // replacements, unpublishes the volume from every node.
    for (const node of nodes) await dkokAt(nodes[0]!, ['node', 'update', '--availability', 'pause', node.id]);
    await dkokAt(nodes[0]!, ['volume', 'update', '--availability', 'drain', vol]);
    await waitFor('no task to run on the drained volume', async () => (await runningOn()).length === 0, 120_000, 1000);
    expect(await dkokAt(nodes[0]!, ['service', 'ps', '--no-trunc', '--format', '{{.Error}}', service])).toContain('attached to volume which is being drained');
    await waitFor('the drained volume to be unpublished from every node', async () => (await clusterStatus(vol)) === 'created', 120_000, 1000);
    for (const node of nodes) await waitFor(`${node.label} to unmount the drained volume`, async () => !(await mountedOn(node, vol)), 60_000, 1000);

    await dkokAt(nodes[0]!, ['service', 'rm', service]);
    await dkokAt(nodes[0]!, ['volume', 'rm', vol]);
    await waitFor('the cluster volume to be deleted', async () => (await clusterStatus(vol)) === '', 120_000, 1000);
    for (const node of nodes) await dkokAt(nodes[0]!, ['node', 'update', '--availability', 'active', node.id]);
    expect(remoteExists(remote, 'log.txt')).toBe(true);
    // The key went to the plugins as a Swarm secret only: in no record Docker shows, in neither dockerd's log.
    expect(logs()).not.toContain(keyBody);
    console.log(`[csi] two-node flow took ${Math.round((Date.now() - started) / 1000)} s`);
  }, 900_000);
});
