// `npm run host:install` / `host:remove` (scripts/host-install.sh): the plugin as a host service, installed into a
// directory tree of this test (HOST_* variables) so the machine's /usr/local, /etc and /var/lib stay untouched.
// systemd is not PID 1 on these machines, so what systemd would do is done by hand and as closely as it can be:
// `systemd-analyze verify` checks both units; the unit's ExecStart runs with its EnvironmentFile, its
// CapabilityBoundingSet and NoNewPrivileges (setpriv), once binding the socket itself and once given the socket unit's
// ListenStream by systemd-socket-activate (LISTEN_FDS), against the test dockerd and sshd; a restart stops the main
// process only (KillMode=process) and the running container keeps its mount.
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endedPluginStandIn } from './ended-plugins.js';
import { Resources, dockerOk, e2eDir, loadEnv, makeRemoteSubdir, parseEnvFile, randomId, readRemote, sshfsMountsUnder } from './harness.js';
import { HostService, hostPaths, hostScript as runHostScript, unitValue } from './host-service.js';
import { ensurePackages } from './release-env.js';

const env = loadEnv();
const id = randomId();
const root = path.join(env.dir, 'host-install', id);
const driver = `sshfs-host-${id}`;
const paths = hostPaths(root, driver);
const socket = paths.HOST_SOCKET;
const service = new HostService(paths);
const unitFile = (ext: 'service' | 'socket') => service.unitFile(ext);
const hostScript = (step: 'install' | 'remove', extra: Record<string, string> = {}) => runHostScript(step, paths, extra);
const res = new Resources();
const vol = res.volume(`host-${id}`);
const holder = res.container(`host-holder-${id}`);

/** Every file and directory under DIR (relative), or [] when it is gone. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

const startAsUnit = (withSocketUnit: boolean) => service.start(withSocketUnit, process.env.HOST_INSTALL_DEBUG ? { DEBUG: '1' } : {});
const stopAsUnit = () => service.stop();

describe('npm run host:install: the plugin as a host service', () => {
  let installOutput = '';
  beforeAll(async () => {
    await ensurePackages('systemd', 'util-linux');
    rmSync(root, { recursive: true, force: true });
    const r = await hostScript('install');
    installOutput = r.all ?? '';
    if (r.exitCode !== 0) throw new Error(`host-install.sh install failed (${r.exitCode}):\n${installOutput}`);
  }, 900_000);

  afterAll(async () => {
    writeFileSync(path.join(env.dir, 'host-install', `plugin-${id}.log`), service.log());
    const errors = await res.cleanup();
    await stopAsUnit();
    // dockerd asks every legacy plugin it has used on later ls/inspect: a stand-in answers for the ended one.
    if (existsSync(socket) || service.started()) await endedPluginStandIn(socket, e2eDir());
    await hostScript('remove', { HOST_PURGE: '1' });
    if ((await sshfsMountsUnder(root)).length === 0) rmSync(root, { recursive: true, force: true });
    if (errors.length > 0) console.warn(`[host-install] cleanup: ${errors.join('; ')}`);
  }, 300_000);

  it('installs the app with its own production node_modules, the environment file and both units', () => {
    const prefix = paths.HOST_PREFIX;
    expect(existsSync(path.join(prefix, 'dist/adapter/main.js'))).toBe(true);
    const deps = readdirSync(path.join(prefix, 'node_modules'));
    expect(deps).toEqual(expect.arrayContaining(['hono', '@hono', 'execa', 'lowdb']));
    for (const dev of ['typescript', 'vitest', 'eslint', '.bin']) expect(deps).not.toContain(dev);
    // Its own copy: nothing links back into the checkout.
    for (const dep of ['hono', 'execa', 'lowdb']) expect(realpathSync(path.join(prefix, 'node_modules', dep)).startsWith(`${prefix}/`), dep).toBe(true);
    expect(realpathSync(path.join(prefix, 'dist')).startsWith(`${prefix}/`)).toBe(true);
    expect(unitValue(unitFile('service'), 'EnvironmentFile')).toBe(path.join(paths.HOST_CONFIG_DIR, 'env'));
    const fileEnv = parseEnvFile(readFileSync(path.join(paths.HOST_CONFIG_DIR, 'env'), 'utf8'));
    expect(fileEnv).toMatchObject({
      SOCKET_PATH: socket,
      STATE_DIR: paths.HOST_STATE_DIR,
      KEYS_DIR: path.join(paths.HOST_CONFIG_DIR, 'keys'),
      MOUNT_ROOT: paths.HOST_MOUNT_ROOT,
    });
    for (const dir of [fileEnv.KEYS_DIR!, paths.HOST_STATE_DIR]) expect(statSync(dir).mode & 0o777, dir).toBe(0o700);
    const service = unitFile('service');
    expect(unitValue(service, 'ExecStart')).toBe(`${process.execPath} ${prefix}/dist/adapter/main.js`);
    expect(unitValue(service, 'KillMode')).toBe('process');
    expect(unitValue(service, 'Restart')).toBe('on-failure');
    expect(unitValue(service, 'After')).toBe('network-online.target');
    expect(unitValue(service, 'Before')).toBe('docker.service podman.service');
    expect(unitValue(service, 'StandardOutput')).toBe('journal');
    expect(unitValue(unitFile('socket'), 'ListenStream')).toBe(socket);
    // The end of the install says what to do next, with this install's driver name and keys directory.
    expect(installOutput).toContain(`docker volume create -d ${driver} `);
    expect(installOutput).toContain(`${fileEnv.KEYS_DIR}/id_ed25519`);
  });

  it('systemd-analyze verify accepts both units without a warning (and does warn on a broken copy)', async () => {
    const verify = (files: string[]) => execa('systemd-analyze', ['verify', ...files], { reject: false, all: true, input: '' });
    const r = await verify([unitFile('service'), unitFile('socket')]);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all ?? '').toBe('');
    // The check can fail: a misspelt directive is reported.
    const broken = path.join(root, 'broken', 'docker-volume-sshfs.service');
    await execa('mkdir', ['-p', path.dirname(broken)]);
    writeFileSync(broken, readFileSync(unitFile('service'), 'utf8').replace('KillMode=process', 'KillMode=proces'));
    expect((await verify([broken])).all).toMatch(/kill mode/i);
  });

  it("runs the unit's ExecStart: volume, containers writing and reading, a restart keeping a running container's mount, rm", async () => {
    const keysDir = path.join(paths.HOST_CONFIG_DIR, 'keys');
    copyFileSync(env.keyFile, path.join(keysDir, 'id_ed25519'));
    chmodSync(path.join(keysDir, 'id_ed25519'), 0o600);
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser, 'hostinstall');
    const text = `through the host service: ${id}\n`;

    await startAsUnit(false);
    await dockerOk(['volume', 'create', '-d', driver, '-o', `sshcmd=${env.keyUser}@${env.sshHost}:${remote}`, '-o', `port=${env.sshPort}`, '-o', 'IdentityFile=id_ed25519', vol]);
    await dockerOk(['run', '--rm', '-i', '-v', `${vol}:/data`, env.image, 'sh', '-c', 'cat > /data/hello.txt'], { input: text });
    expect(await readRemote(remote, 'hello.txt')).toBe(text);
    expect(`${await dockerOk(['run', '--rm', '-v', `${vol}:/data`, env.image, 'cat', '/data/hello.txt'])}\n`).toBe(text);
    const inspect = JSON.parse(await dockerOk(['volume', 'inspect', vol])) as { Mountpoint: string; Status: Record<string, unknown> }[];
    expect(inspect[0]!.Mountpoint.startsWith(`${paths.HOST_MOUNT_ROOT}/`)).toBe(true);
    // The state lands where the environment file says.
    expect(existsSync(path.join(paths.HOST_STATE_DIR, 'volumes.json')) || existsSync(path.join(paths.HOST_STATE_DIR, 'volumes.journal'))).toBe(true);

    // A container holds the volume across a restart of the service (main process only), now socket-activated.
    // Read-ahead was set in /sys within the bounding set (the holder below keeps the volume mounted to look).
    await dockerOk(['run', '-d', '--name', holder, '-v', `${vol}:/data`, env.image, 'sleep', '600']);
    const status = (JSON.parse(await dockerOk(['volume', 'inspect', vol])) as { Status: Record<string, unknown> }[])[0]!.Status;
    expect(status.readAheadKb, JSON.stringify(status)).toBe(1024);
    await stopAsUnit();
    expect((await sshfsMountsUnder(paths.HOST_MOUNT_ROOT)).length, service.log()).toBe(1);
    await startAsUnit(true);
    expect(service.log()).toContain('(the socket systemd passed)');
    expect(`${await dockerOk(['exec', holder, 'cat', '/data/hello.txt'])}\n`).toBe(text);
    await dockerOk(['rm', '-f', holder]);
    await dockerOk(['volume', 'rm', vol]);
    expect(await sshfsMountsUnder(paths.HOST_MOUNT_ROOT)).toEqual([]);
    expect(await readRemote(remote, 'hello.txt')).toBe(text); // rm never touches the remote files
    // A stop leaves systemd's socket file in place (the socket unit owns it): the plugin never unlinks it.
    await stopAsUnit();
    expect(existsSync(socket)).toBe(true);
    expect(service.log()).not.toMatch(/capabilit|Operation not permitted|EPERM/i);
  });

  it('host:remove removes the program, units and environment file, keeps keys and state; HOST_PURGE=1 leaves nothing', async () => {
    const r = await hostScript('remove');
    expect(r.exitCode, r.all).toBe(0);
    expect(existsSync(paths.HOST_PREFIX)).toBe(false);
    expect(existsSync(unitFile('service')) || existsSync(unitFile('socket'))).toBe(false);
    expect(existsSync(path.join(paths.HOST_CONFIG_DIR, 'env'))).toBe(false);
    expect(tree(path.join(paths.HOST_CONFIG_DIR, 'keys'))).toEqual(['id_ed25519']);
    expect(r.all).toContain('HOST_PURGE=1 npm run host:remove');
    const purge = await hostScript('remove', { HOST_PURGE: '1' });
    expect(purge.exitCode, purge.all).toBe(0);
    for (const p of [paths.HOST_PREFIX, paths.HOST_CONFIG_DIR, paths.HOST_STATE_DIR, paths.HOST_MOUNT_ROOT, path.dirname(paths.HOST_MOUNT_ROOT)]) {
      expect(existsSync(p), p).toBe(false);
    }
    expect(tree(paths.HOST_UNIT_DIR)).toEqual([]);
  });

  it('refuses paths that would split in a unit or environment file, before writing anything', async () => {
    const bad: [string, string][] = [['HOST_SOCKET', '/run/docker/plugins/two words.sock'], ['HOST_STATE_DIR', '/var/lib/$(id)'], ['HOST_SOCKET', '/run/docker/plugins/sshfs']];
    for (const [key, value] of bad) {
      const r = await hostScript('install', { [key]: value });
      expect(r.exitCode, `${key}=${value}`).not.toBe(0);
      expect(r.all).toContain(key);
    }
    for (const p of [paths.HOST_PREFIX, paths.HOST_CONFIG_DIR, paths.HOST_STATE_DIR]) expect(existsSync(p), p).toBe(false);
  });
});
