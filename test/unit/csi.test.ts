// The CSI front end over a real gRPC client on a Unix socket, with the handlers' fakes underneath (fake runner, fake
// mount table, memory store): what Swarm calls, what the handlers then do, and what never leaks.
import { credentials, loadPackageDefinition, type Client, type GrpcObject, type ServiceError } from '@grpc/grpc-js';
import { lstat, mkdir, mkdtemp, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CsiConfig } from '../../adapter/csi/config.js';
import { readCsiConfig } from '../../adapter/csi/config.js';
import { startCsiPlugin } from '../../adapter/csi/plugin.js';
import { csiPackage } from '../../adapter/csi/schema.js';
import type { RunningPlugin } from '../../adapter/plugin.js';
import { makeDeps, TEST_KEY, type TestDeps } from './fixtures.js';

const SSHCMD = 'alice@files.example.com:/srv/data';
const PASSWORD = 'pw-never-shown-7f3a';
const SWARM_ID = 'x2k9q0c7v1abcdefghijklmno';

type Call = (request: object) => Promise<Record<string, unknown>>;
type Stub = Record<
  | 'GetPluginInfo'
  | 'GetPluginCapabilities'
  | 'Probe'
  | 'CreateVolume'
  | 'DeleteVolume'
  | 'ControllerGetCapabilities'
  | 'NodePublishVolume'
  | 'NodeUnpublishVolume'
  | 'NodeGetCapabilities'
  | 'NodeGetInfo',
  Call
>;

let dir: string;
let plugin: RunningPlugin | undefined;
let clients: Client[] = [];

function stub(socket: string, service: 'Identity' | 'Controller' | 'Node'): Stub {
  const v1 = (loadPackageDefinition(csiPackage()).csi as GrpcObject).v1 as GrpcObject;
  const Ctor = v1[service] as unknown as new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;
  const client = new Ctor(`unix://${socket}`, credentials.createInsecure());
  clients.push(client);
  return new Proxy({} as Stub, {
    get: (_t, method: string) => (request: object) =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, (r: object, cb: (e: ServiceError | null, v: Record<string, unknown>) => void) => void>)[method]!(
          request,
          (error, value) => (error ? reject(error) : resolve(value)),
        ),
      ),
  });
}

interface World {
  deps: TestDeps;
  config: CsiConfig;
  identity: Stub;
  controller: Stub;
  node: Stub;
}

async function start(deps: TestDeps = makeDeps({ mountRoot: join(dir, 'published', '.mounts') })): Promise<World> {
  const config: CsiConfig = {
    ...deps.config,
    socketPath: join(dir, 'csi.sock'),
    debug: true,
    dryRun: false,
    publishRoot: join(dir, 'published'),
    nodeId: 'node-a',
  };
  await plugin?.stop('test restart', 1000);
  plugin = await startCsiPlugin(config, deps.log, deps);
  await plugin.recovered;
  return { deps, config, identity: stub(config.socketPath, 'Identity'), controller: stub(config.socketPath, 'Controller'), node: stub(config.socketPath, 'Node') };
}

const mountCapability = { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(error, 'the call fails').toBeDefined();
  return error!;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'csi-unit-'));
  await mkdir(join(dir, 'published'), { recursive: true });
});

afterEach(async () => {
  for (const c of clients) c.close();
  clients = [];
  await plugin?.stop('test end', 1000);
  plugin = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('CSI identity', () => {
  it('names the plugin, offers the controller service and is ready', async () => {
    const w = await start();
    expect((await w.identity.GetPluginInfo({})).name).toMatch(/^[a-z0-9][a-z0-9.-]{0,61}[a-z0-9]$/);
    expect((await w.identity.GetPluginCapabilities({})).capabilities).toEqual([{ service: { type: 'CONTROLLER_SERVICE' }, type: 'service' }]);
    expect(await w.identity.Probe({})).toEqual({ ready: { value: true } });
    expect((await w.controller.ControllerGetCapabilities({})).capabilities).toEqual([{ rpc: { type: 'CREATE_DELETE_VOLUME' }, type: 'rpc' }]);
    expect(await w.node.NodeGetCapabilities({})).toEqual({ capabilities: [] });
    expect((await w.node.NodeGetInfo({})).node_id).toBe('node-a');
  });
});

describe('CSI CreateVolume / DeleteVolume', () => {
  it('creates with the parameters as options and a password secret; answers the name as id, no secret in the context', async () => {
    const w = await start();
    const answer = await w.controller.CreateVolume({
      name: 'v1',
      volume_capabilities: [mountCapability],
      parameters: { sshcmd: SSHCMD, port: '2222' },
      secrets: { password: PASSWORD },
    });
    expect(answer.volume).toMatchObject({ volume_id: 'v1', volume_context: { sshcmd: SSHCMD, port: '2222' } });
    expect(JSON.stringify(answer)).not.toContain(PASSWORD);
    const record = await w.deps.store.get('v1');
    expect(record?.options).toEqual({ sshcmd: SSHCMD, port: '2222', password: PASSWORD });
    // Same again: a no-op (Swarm retries a CreateVolume whose answer it lost).
    await w.controller.CreateVolume({ name: 'v1', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD, port: '2222' }, secrets: { password: PASSWORD } });
    expect(w.deps.logs.join('\n')).not.toContain(PASSWORD);
  });

  it('writes a private key secret to a 0600 key file, never into the store or the logs', async () => {
    const w = await start();
    await w.controller.CreateVolume({ name: 'kv', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD }, secrets: { key: TEST_KEY } });
    const record = await w.deps.store.get('kv');
    expect(record?.keyFile).toBe('/state/keys/kv.key');
    expect(w.deps.fs.files.get('/state/keys/kv.key')).toEqual({ content: `${TEST_KEY}\n`.replace(/\n\n$/, '\n'), mode: 0o600 });
    expect(JSON.stringify(record?.options)).not.toContain('PRIVATE KEY');
    expect(w.deps.logs.join('\n')).not.toContain('b3BlbnNzaC1rZXkt');
  });

  it('refuses a credential given as a parameter (Docker shows parameters in inspect), and unknown secret keys', async () => {
    const w = await start();
    const asParameter = await failure(w.controller.CreateVolume({ name: 'p', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD, password: PASSWORD } }));
    expect(asParameter.code).toBe(3); // INVALID_ARGUMENT
    expect(asParameter.details).toMatch(/must be a Swarm secret.*docker secret create/);
    expect(asParameter.details).not.toContain(PASSWORD);
    // Option names are case-insensitive: another spelling of a credential is refused too, never stored as a parameter.
    for (const spelling of ['Password', 'PASSWORD', 'Key']) {
      const respelled = await failure(w.controller.CreateVolume({ name: 'p', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD, [spelling]: PASSWORD } }));
      expect(respelled.code).toBe(3);
      expect(respelled.details).toMatch(/option (password|key) of a cluster volume must be a Swarm secret/);
    }
    const unknown = await failure(w.controller.CreateVolume({ name: 'p', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD }, secrets: { port: '22' } }));
    expect(unknown.code).toBe(3);
    expect(unknown.details).toMatch(/secret key "port" is not one this plugin reads/);
    expect(await w.deps.store.list()).toEqual([]);
    expect(w.deps.logs.join('\n')).not.toContain(PASSWORD);
  });

  it("answers the handlers' own option checks, changing nothing", async () => {
    const w = await start();
    const bad = await failure(w.controller.CreateVolume({ name: 'b', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD, ProxyCommand: 'touch /tmp/x' } }));
    expect(bad.code).toBe(3);
    expect(bad.details).toMatch(/ProxyCommand" is not supported/);
    const block = await failure(w.controller.CreateVolume({ name: 'b', volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }], parameters: { sshcmd: SSHCMD } }));
    expect(block.details).toMatch(/not a block device/);
    await w.controller.CreateVolume({ name: 'b', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD } });
    const other = await failure(w.controller.CreateVolume({ name: 'b', volume_capabilities: [mountCapability], parameters: { sshcmd: `${SSHCMD}/other` } }));
    expect(other.code).toBe(6); // ALREADY_EXISTS
    expect((await w.deps.store.get('b'))?.options.sshcmd).toBe(SSHCMD);
    expect(w.deps.runner.calls.filter((c) => c.program === 'sshfs')).toEqual([]);
  });

  it('deletes a volume, and a volume already gone is deleted too', async () => {
    const w = await start();
    await w.controller.CreateVolume({ name: 'd', volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD }, secrets: { key: TEST_KEY } });
    await w.controller.DeleteVolume({ volume_id: 'd' });
    expect(await w.deps.store.get('d')).toBeUndefined();
    expect(w.deps.fs.files.has('/state/keys/d.key')).toBe(false);
    await w.controller.DeleteVolume({ volume_id: 'd' });
    expect((await failure(w.controller.DeleteVolume({}))).code).toBe(3);
  });
});

describe('CSI NodePublishVolume / NodeUnpublishVolume', () => {
  async function created(w: World, name = 'v'): Promise<void> {
    await w.controller.CreateVolume({ name, volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD }, secrets: { password: PASSWORD } });
  }
  const target = (w: World, id = SWARM_ID) => posix.join(w.config.publishRoot, id);
  const publish = (w: World, name = 'v', id = SWARM_ID) =>
    w.node.NodePublishVolume({
      volume_id: name,
      target_path: target(w, id),
      volume_capability: mountCapability,
      volume_context: { sshcmd: SSHCMD },
      secrets: { password: PASSWORD },
    });

  it('mounts the volume once and links the target to its mountpoint; publishing again keeps one reference', async () => {
    const w = await start();
    await created(w);
    await publish(w);
    const mountpoint = posix.join(w.config.mountRoot, 'v');
    expect(w.deps.mounts.mounted.has(mountpoint)).toBe(true);
    expect(await readlink(target(w))).toBe('.mounts/v');
    const sshfs = w.deps.runner.calls.filter((c) => c.program === 'sshfs');
    expect(sshfs).toHaveLength(1);
    expect(sshfs[0]?.input).toBe(`${PASSWORD}\n`);
    expect(sshfs[0]?.args.join(' ')).not.toContain(PASSWORD);
    await publish(w);
    expect((await w.deps.store.get('v'))?.mounts).toEqual({ [`csi:${SWARM_ID}`]: 1 });
    expect(w.deps.runner.calls.filter((c) => c.program === 'sshfs')).toHaveLength(1);
    expect(w.deps.logs.join('\n')).not.toContain(PASSWORD);
  });

  it('unpublishing removes the link and the last reference unmounts; a second unpublish is a no-op', async () => {
    const w = await start();
    await created(w);
    await publish(w);
    await publish(w, 'v', 'secondtaskvolumeid0000001');
    await w.node.NodeUnpublishVolume({ volume_id: 'v', target_path: target(w) });
    await expect(lstat(target(w))).rejects.toThrow(/ENOENT/);
    expect(w.deps.mounts.mounted.has(posix.join(w.config.mountRoot, 'v'))).toBe(true);
    await w.node.NodeUnpublishVolume({ volume_id: 'v', target_path: target(w, 'secondtaskvolumeid0000001') });
    expect(w.deps.mounts.mounted.has(posix.join(w.config.mountRoot, 'v'))).toBe(false);
    expect((await w.deps.store.get('v'))?.mounts).toEqual({});
    await w.node.NodeUnpublishVolume({ volume_id: 'v', target_path: target(w) });
    // After DeleteVolume (the manager's), an unpublish that comes late still succeeds.
    await w.controller.DeleteVolume({ volume_id: 'v' });
    await w.node.NodeUnpublishVolume({ volume_id: 'v', target_path: target(w) });
  });

  it('creates the volume from the context and secrets on a node that never saw CreateVolume', async () => {
    const w = await start();
    await publish(w, 'elsewhere');
    expect((await w.deps.store.get('elsewhere'))?.options).toEqual({ sshcmd: SSHCMD, password: PASSWORD });
    expect(await readlink(target(w))).toBe('.mounts/elsewhere');
  });

  it('replaces an unused record left by an earlier volume of the same name, refuses to while it is in use', async () => {
    const w = await start();
    await w.controller.CreateVolume({ name: 'v', volume_capabilities: [mountCapability], parameters: { sshcmd: `${SSHCMD}/old` } });
    await publish(w);
    expect((await w.deps.store.get('v'))?.options.sshcmd).toBe(SSHCMD);
    const busy = await failure(
      w.node.NodePublishVolume({ volume_id: 'v', target_path: target(w, 'othertarget00000000000001'), volume_capability: mountCapability, volume_context: { sshcmd: `${SSHCMD}/new` } }),
    );
    expect(busy.code).toBe(9); // FAILED_PRECONDITION
    expect(busy.details).toMatch(/other options and is in use/);
  });

  it('a server that does not answer fails the publish within the mount timeout, links nothing and holds nothing', async () => {
    const w = await start();
    await created(w);
    w.deps.config.mountTimeoutMs = 1_000;
    w.deps.runner.script = (call) => (call.program === 'sshfs' ? { exitCode: -1, timedOut: true } : undefined);
    const error = await failure(publish(w));
    expect(error.code).toBe(9); // FAILED_PRECONDITION: Swarm retries it later
    expect(error.details).toMatch(/did not connect to .* within 1 s/);
    await expect(lstat(target(w))).rejects.toThrow(/ENOENT/);
    expect((await w.deps.store.get('v'))?.mounts).toEqual({});
    // The sshfs that never mounted was ended, its ssh with it (one process group).
    expect(w.deps.mounts.running.size).toBe(0);
  });

  it('refuses targets outside the publish root, read-only publishing and what is not a link, touching nothing', async () => {
    const w = await start();
    await created(w);
    for (const bad of ['/etc/passwd', `${w.config.publishRoot}/../x`, `${w.config.publishRoot}/.mounts`, `${w.config.publishRoot}/a/b`, 'relative']) {
      const error = await failure(w.node.NodePublishVolume({ volume_id: 'v', target_path: bad, volume_capability: mountCapability, volume_context: { sshcmd: SSHCMD } }));
      expect(error.code, bad).toBe(3);
    }
    const ro = await failure(w.node.NodePublishVolume({ volume_id: 'v', target_path: target(w), readonly: true, volume_context: { sshcmd: SSHCMD } }));
    expect(ro.details).toMatch(/readonly/);
    expect(w.deps.runner.calls.filter((c) => c.program === 'sshfs')).toEqual([]);
    // A directory with files in it is never replaced; the reference taken for it is given back.
    await mkdir(target(w));
    await writeFile(join(target(w), 'data'), 'keep');
    const full = await failure(publish(w));
    expect(full.code).toBe(9);
    expect((await w.deps.store.get('v'))?.mounts).toEqual({});
    expect((await lstat(join(target(w), 'data'))).isFile()).toBe(true);
  });

  it('after a restart, mounts again what was published (Swarm does not publish it again), and drops a link it cannot mount', async () => {
    const w = await start();
    await created(w);
    await created(w, 'gone');
    await publish(w);
    await publish(w, 'gone', 'gonetarget000000000000001');
    // The plugin dies: its sshfs processes with it, and the mounts with its mount namespace (a managed plugin).
    for (const name of ['v', 'gone']) w.deps.mounts.removed(posix.join(w.config.mountRoot, name));
    w.deps.runner.script = (call) => (call.program === 'sshfs' && call.args.some((a) => a.includes('gone')) ? { exitCode: 1, stderr: 'read: Connection reset by peer' } : undefined);
    const before = w.deps.runner.calls.filter((c) => c.program === 'sshfs').length;
    const again = await start(w.deps);
    expect(again.deps.mounts.mounted.has(posix.join(w.config.mountRoot, 'v'))).toBe(true);
    expect(w.deps.runner.calls.filter((c) => c.program === 'sshfs').length).toBeGreaterThan(before);
    expect((await w.deps.store.get('v'))?.mounts).toEqual({ [`csi:${SWARM_ID}`]: 1 });
    expect(await readlink(target(w))).toBe('.mounts/v');
    // The one that cannot be mounted loses its link: a task started on it fails instead of writing to local disk.
    await expect(lstat(target(w, 'gonetarget000000000000001'))).rejects.toThrow(/ENOENT/);
    expect((await w.deps.store.get('gone'))?.mounts).toEqual({});
  });
});

describe('CSI volume names', () => {
  it('refuses a name that is not a volume name (a path, a dot name) with the same rule as Docker\'s, storing and running nothing', async () => {
    const w = await start();
    for (const name of ['../etc', 'a/b', '.hidden', `${'x'.repeat(256)}`]) {
      const create = await failure(w.controller.CreateVolume({ name, volume_capabilities: [mountCapability], parameters: { sshcmd: SSHCMD } }));
      expect(create.code, name).toBe(3); // INVALID_ARGUMENT
      expect(create.details).toMatch(/volume name .* is not valid: use letters, digits/);
      const publish = await failure(
        w.node.NodePublishVolume({ volume_id: name, target_path: posix.join(w.config.publishRoot, SWARM_ID), volume_capability: mountCapability, volume_context: { sshcmd: SSHCMD } }),
      );
      expect(publish.details, name).toMatch(/volume name .* is not valid/);
    }
    expect(await w.deps.store.list()).toEqual([]);
    expect(w.deps.runner.calls).toEqual([]);
  });
});

describe('CSI configuration', () => {
  it('takes the socket from CSI_ENDPOINT and mounts inside the publish root', () => {
    const config = readCsiConfig({ CSI_ENDPOINT: 'unix:///run/docker/plugins/sshfs-csi.sock', NODE_ID: 'n1' });
    expect(config).toMatchObject({ socketPath: '/run/docker/plugins/sshfs-csi.sock', publishRoot: '/data/published', mountRoot: '/data/published/.mounts', nodeId: 'n1' });
    expect(() => readCsiConfig({})).toThrow(/CSI_ENDPOINT/);
    expect(() => readCsiConfig({ CSI_ENDPOINT: '/x.sock', MOUNT_ROOT: '/mnt/volumes' })).toThrow(/dot directory of PUBLISH_ROOT/);
    expect(() => readCsiConfig({ CSI_ENDPOINT: 'tcp://1.2.3.4:1' })).toThrow(/Unix socket/);
  });
});
