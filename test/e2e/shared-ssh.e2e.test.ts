// Shared ssh connections against the real sshd: mounts of one server with the same credentials log in once (sshd's
// own log counts the logins), a volume with a wrong key still fails, a killed master is replaced, and masters go when
// their last volume is removed and when the plugin stops.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createVolume, describeRun, docker, expectOk, inspectVolume, keyOpts, loadEnv, makeRemoteSubdir, pluginRequest,
  randomId, readRemote, removeVolume, Resources, runWith, sshfsMountsUnder, startLegacyPlugin, uniq, waitFor,
  type LegacyPlugin,
} from './harness.js';

const env = loadEnv();
const res = new Resources();
let plugin: LegacyPlugin;
const WRONG_KEY = path.join(env.keysDir, `wrong-${randomId()}`);

const runWithOk = async (volume: string, script: string): Promise<string> => expectOk(await runWith(volume, script), plugin);

/** Key logins of the test user that sshd accepted so far (sshd logs at VERBOSE, one line per login). */
function sshdLogins(): number {
  const log = readFileSync(path.join(env.dir, 'sshd.log'), 'utf8');
  return log.split('\n').filter((l) => l.includes(`Accepted publickey for ${env.keyUser} `)).length;
}

/** PIDs of the shared-connection masters a plugin started (their command line names its control directory). */
function masters(p: LegacyPlugin): number[] {
  const dir = `ControlPath=${path.join(p.stateDir, 'cm')}/`;
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') === 'ssh' && argv.includes('ControlMaster=yes') && argv.some((a) => a.startsWith(dir))) pids.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function waitUnmounted(volume: string): Promise<void> {
  await waitFor(`${volume} to be unmounted`, async () => (await inspectVolume(volume)).Status?.mounted === false, 20_000);
}

beforeAll(async () => {
  plugin = await startLegacyPlugin();
  // A valid key the server does not know.
  const r = await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', WRONG_KEY], { reject: false });
  expect(r.exitCode, r.stderr).toBe(0);
});

afterAll(async () => {
  const errors = await res.cleanup();
  const leftover = plugin ? await sshfsMountsUnder(plugin.mountRoot) : [];
  if (plugin) await plugin.end();
  rmSync(WRONG_KEY, { force: true });
  rmSync(`${WRONG_KEY}.pub`, { force: true });
  expect(errors, 'cleanup errors').toEqual([]);
  expect(leftover.map((m) => m.mountpoint)).toEqual([]);
  await waitFor('no master left after the plugin stopped', () => masters(plugin).length === 0, 10_000);
});

describe('shared ssh connections', () => {
  it('two volumes with the same credentials log in once; a wrong key still fails; the last Remove closes the login', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const a = await createVolume(res, plugin, uniq('share-a'), keyOpts(remote));
    const b = await createVolume(res, plugin, uniq('share-b'), keyOpts(remote));
    const before = sshdLogins();
    // One after another, each unmounted before the next starts (a login carries one mounted volume at a time, and
    // Docker's Unmount may trail the CLI).
    await runWithOk(a, 'echo one > /data/one');
    await waitUnmounted(a);
    await runWithOk(b, 'cat /data/one && echo two > /data/two');
    await waitUnmounted(b);
    await runWithOk(a, 'cat /data/two'); // cold again
    expect(await readRemote(remote, 'two')).toBe('two\n');
    expect(sshdLogins() - before, 'ssh logins for three cold mounts of one server').toBe(1);
    expect(masters(plugin)).toHaveLength(1);
    const [sa, sb] = [(await inspectVolume(a)).Status ?? {}, (await inspectVolume(b)).Status ?? {}];
    expect(sa, JSON.stringify(sa)).toMatchObject({ sharedConnection: 'up' });
    expect(sb.sharedConnectionId).toBe(sa.sharedConnectionId);
    const socket = path.join(plugin.stateDir, 'cm', String(sa.sharedConnectionId));

    // Same server and user, a key the server refuses: its own login fails although a's connection is up.
    const wrong = await createVolume(res, plugin, uniq('share-wrong'), keyOpts(remote, WRONG_KEY));
    const r = await runWith(wrong, 'true');
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(masters(plugin)).toHaveLength(1);
    await removeVolume(res, wrong, plugin);

    await removeVolume(res, a, plugin);
    expect(masters(plugin), 'b still uses the login').toHaveLength(1);
    await removeVolume(res, b, plugin);
    await waitFor('the master to exit after its last volume was removed', () => masters(plugin).length === 0, 10_000);
    expect(() => readFileSync(socket)).toThrow(/ENOENT/);
  });

  it('a killed master is confined to its volumes: a running container reads on, the next mount logs in anew', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const a = await createVolume(res, plugin, uniq('share-kill'), keyOpts(remote));
    const holder = res.container(uniq('share-holder'));
    const started = await docker(['run', '-d', '--name', holder, '--network', 'none', '-v', `${a}:/data`, env.image, 'sleep', '600']);
    expect(started.exitCode, describeRun(started, plugin)).toBe(0);
    const [master] = masters(plugin);
    expect(master).toBeDefined();
    process.kill(master ?? 0, 'SIGKILL');
    // sshfs reconnects by itself (its own login this time) at the next access.
    await waitFor(
      'the held volume to answer again',
      async () => (await docker(['exec', holder, 'sh', '-c', 'echo healed > /data/healed && cat /data/healed'])).stdout === 'healed',
      30_000,
      500,
    );
    const b = await createVolume(res, plugin, uniq('share-after-kill'), keyOpts(remote));
    await runWithOk(b, 'cat /data/healed');
    expect(masters(plugin)).toHaveLength(1);
    expect(masters(plugin)[0]).not.toBe(master);
    await docker(['rm', '-f', holder]);
    res.containers.delete(holder);
    await removeVolume(res, a, plugin);
    await removeVolume(res, b, plugin);
  });

  it('the plugin stopping (SIGTERM) leaves no master behind', async () => {
    const own = await startLegacyPlugin();
    try {
      // Straight through the plugin's socket, as dockerd would: dockerd never learns of this volume.
      const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
      const call = async (endpoint: string, body: unknown) => {
        const r = await pluginRequest(own.socketPath, endpoint, body, 30_000);
        expect(JSON.parse(r.body).Err ?? '', r.body).toBe('');
      };
      await call('/VolumeDriver.Create', { Name: 'share-stop', Opts: keyOpts(remote) });
      await call('/VolumeDriver.Mount', { Name: 'share-stop', ID: 'x' });
      await call('/VolumeDriver.Unmount', { Name: 'share-stop', ID: 'x' });
      expect(masters(own)).toHaveLength(1); // idle, kept for the next mount
      await own.stop();
      await waitFor('the master to exit with the plugin', () => masters(own).length === 0, 10_000);
    } finally {
      await own.stop();
    }
  });
});
