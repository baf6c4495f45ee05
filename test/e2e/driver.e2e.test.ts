// The plugin in host mode, driven through the docker CLI: a real dockerd, a real sshd on 127.0.0.1, real FUSE mounts.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createVolume, describeRun, docker, dockerOk, expectOk, inspectVolume, isSshfsMounted, keyOpts, listVolumes, loadEnv,
  makeRemoteSubdir, pluginRequest, pwOpts, randomId, readAheadKbAt, readRemote, remoteExists, removeVolume, Resources,
  runWith, sshfsMountsUnder, startLegacyPlugin, tryCreateVolume, uniq, waitFor, type LegacyPlugin,
} from './harness.js';

const env = loadEnv();
const res = new Resources();
let plugin: LegacyPlugin;

/** Canary files an injected ProxyCommand / ssh_command would create. */
const CANARY = `/tmp/pwned-${randomId()}`;
const LEGACY_CANARY = '/tmp/pwned';
const legacyCanaryExisted = existsSync(LEGACY_CANARY);

const runWithOk = async (volume: string, script: string, extra: string[] = []): Promise<string> => expectOk(await runWith(volume, script, extra), plugin);

/** Starts a long-running container using VOLUME; returns its name once it runs. */
async function startSleeper(volume: string): Promise<string> {
  const name = res.container(uniq('e2e-sleeper'));
  const r = await docker(['run', '-d', '--name', name, '--network', 'none', '-v', `${volume}:/data`, env.image, 'sleep', '600']);
  expect(r.exitCode, describeRun(r, plugin)).toBe(0);
  return name;
}

async function stopAndRemove(container: string): Promise<void> {
  await dockerOk(['stop', '-t', '1', container]);
  await dockerOk(['rm', container]);
  res.containers.delete(container);
}

/** After the last container using it is gone, the volume must be unmounted (Docker's Unmount may trail the CLI). */
async function expectUnmounted(volume: string): Promise<void> {
  const mountpoint = path.join(plugin.mountRoot, volume);
  await waitFor(`${mountpoint} to be unmounted`, async () => !(await isSshfsMounted(mountpoint)), 20_000);
  const status = (await inspectVolume(volume)).Status ?? {};
  expect(status.mounted, JSON.stringify(status)).toBe(false);
}

beforeAll(async () => {
  plugin = await startLegacyPlugin();
});

afterAll(async () => {
  const errors = await res.cleanup();
  const leftover = plugin ? await sshfsMountsUnder(plugin.mountRoot) : [];
  if (plugin) await plugin.end();
  const leftoverAfterStop = plugin ? await sshfsMountsUnder(plugin.mountRoot) : [];
  expect(errors, 'cleanup errors').toEqual([]);
  expect(leftover.map((m) => m.mountpoint), 'sshfs mounts left under the mount root after removing everything').toEqual([]);
  expect(leftoverAfterStop.map((m) => m.mountpoint)).toEqual([]);
  expect(existsSync(CANARY), `${CANARY} was created: an option ran a command`).toBe(false);
  if (!legacyCanaryExisted) expect(existsSync(LEGACY_CANARY), `${LEGACY_CANARY} was created`).toBe(false);
});

describe('authentication', () => {
  it('mounts with a key file (-o IdentityFile): one container writes, the next reads', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('key-file'), keyOpts(remote));

    const info = await inspectVolume(vol);
    expect(info.Driver).toBe(plugin.name);
    expect(info.Mountpoint).toBe(path.join(plugin.mountRoot, vol));
    expect(info.Status?.mounted).toBe(false);

    await runWithOk(vol, 'echo "hello via key file" > /data/hello.txt');
    expect(await runWithOk(vol, 'cat /data/hello.txt')).toBe('hello via key file');
    expect(await readRemote(remote, 'hello.txt')).toBe('hello via key file\n');
    // Files written through the volume belong to the ssh user on the server.
    expect(statSync(path.join(remote, 'hello.txt')).uid).toBe(statSync(remote).uid);
    await expectUnmounted(vol);
  });

  it('pins the server host key on first use (StrictHostKeyChecking=accept-new by default)', async () => {
    const knownHosts = path.join(plugin.stateDir, 'known_hosts');
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('pin'), keyOpts(remote));
    await runWithOk(vol, 'true');
    // After one mount the server's key is pinned in the plugin's own known_hosts.
    expect(existsSync(knownHosts), `${knownHosts} missing`).toBe(true);
    const hostKey = readFileSync(env.hostKeyFile, 'utf8').trim().split(/\s+/)[1] ?? '<no key>';
    expect(readFileSync(knownHosts, 'utf8')).toContain(hostKey);
  });

  it('mounts with the key text itself (-o key="$(cat keyfile)") and with it base64-encoded', async () => {
    const keyText = readFileSync(env.keyFile, 'utf8');
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('key-text'), {
      sshcmd: `${env.keyUser}@${env.sshHost}:${remote}`,
      port: String(env.sshPort),
      key: keyText.trimEnd(), // as "$(cat keyfile)" gives it: no trailing newline
    });
    await runWithOk(vol, 'echo "hello via key text" > /data/k.txt');
    expect(await runWithOk(vol, 'cat /data/k.txt')).toBe('hello via key text');
    expect(await readRemote(remote, 'k.txt')).toBe('hello via key text\n');

    const status = JSON.stringify((await inspectVolume(vol)).Status ?? {});
    const keyBody = keyText.split('\n')[1] ?? '<no key body>';
    expect(status).not.toContain(keyBody);

    const vol64 = await createVolume(res, plugin, uniq('key-b64'), {
      sshcmd: `${env.keyUser}@${env.sshHost}:${remote}`,
      port: String(env.sshPort),
      key: Buffer.from(keyText).toString('base64'),
    });
    expect(await runWithOk(vol64, 'cat /data/k.txt')).toBe('hello via key text');
    await expectUnmounted(vol);
    await expectUnmounted(vol64);
  });

  it('mounts with a password full of special characters (-o password=...), never showing it', async () => {
    expect(env.password).toMatch(/[ ,$]/);
    const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    const vol = await createVolume(res, plugin, uniq('pw'), pwOpts(remote));
    await runWithOk(vol, 'echo "hello via password" > /data/p.txt');
    expect(await runWithOk(vol, 'cat /data/p.txt')).toBe('hello via password');
    expect(await readRemote(remote, 'p.txt')).toBe('hello via password\n');

    const info = await inspectVolume(vol);
    const status = JSON.stringify(info.Status ?? {});
    expect(status).not.toContain(env.password);
    expect(info.Status?.remote).toEqual(expect.stringContaining(`${env.pwUser}@${env.sshHost}:${remote}`));
    expect(plugin.logs()).not.toContain(env.password);
    await expectUnmounted(vol);
  });

  it('reports a wrong password with ssh\'s "Permission denied" and leaves nothing mounted', async () => {
    const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    const wrong = `wrong ${randomId()}, $x`;
    const vol = await createVolume(res, plugin, uniq('pw-wrong'), pwOpts(remote, wrong));
    const r = await runWith(vol, 'echo must-not-be-written > /data/x.txt');
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr, describeRun(r, plugin)).toMatch(/Permission denied/);
    expect(r.stderr).not.toContain(wrong);
    expect(remoteExists(remote, 'x.txt')).toBe(false);
    expect(await isSshfsMounted(path.join(plugin.mountRoot, vol))).toBe(false);

    const status = (await inspectVolume(vol)).Status ?? {};
    expect(status.mounted).toBe(false);
    expect(String(status.lastError ?? ''), JSON.stringify(status)).toMatch(/Permission denied/);
    expect(JSON.stringify(status)).not.toContain(wrong);
    expect(plugin.logs()).not.toContain(wrong);
  });

  it('reports a key the server does not accept with "Permission denied"', async () => {
    const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    // The key is authorized for the key user only.
    const vol = await createVolume(res, plugin, uniq('key-refused'), {
      sshcmd: `${env.pwUser}@${env.sshHost}:${remote}`,
      port: String(env.sshPort),
      IdentityFile: env.keyFile,
    });
    const r = await runWith(vol, 'true');
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr, describeRun(r, plugin)).toMatch(/Permission denied/);
    expect(await isSshfsMounted(path.join(plugin.mountRoot, vol))).toBe(false);
  });

  it('checks the host key strictly with StrictHostKeyChecking=yes and a UserKnownHostsFile', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const good = await createVolume(res, plugin, uniq('hostkey-ok'), {
      ...keyOpts(remote),
      StrictHostKeyChecking: 'yes',
      UserKnownHostsFile: env.knownHostsFile,
    });
    await runWithOk(good, 'echo strict > /data/strict.txt');
    expect(await readRemote(remote, 'strict.txt')).toBe('strict\n');

    const emptyKnownHosts = path.join(env.keysDir, `empty_known_hosts_${randomId()}`);
    writeFileSync(emptyKnownHosts, '', { mode: 0o600 });
    const bad = await createVolume(res, plugin, uniq('hostkey-unknown'), {
      ...keyOpts(remote),
      StrictHostKeyChecking: 'yes',
      UserKnownHostsFile: emptyKnownHosts,
    });
    const r = await runWith(bad, 'true');
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr, describeRun(r, plugin)).toMatch(/Host key verification failed|host key/i);
    expect(await isSshfsMounted(path.join(plugin.mountRoot, bad))).toBe(false);
    // The user's known_hosts is only read: ssh never pinned the key into it.
    expect(readFileSync(emptyKnownHosts, 'utf8')).toBe('');
    rmSync(emptyKnownHosts, { force: true });
  });

  it('takes files only from the keys directory: no path outside it, no symlink out of it, the same error for all', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const base = keyOpts(remote);
    const outside = path.join(plugin.baseDir, `outside_${randomId()}`);
    writeFileSync(outside, readFileSync(env.keyFile), { mode: 0o600 }); // a working key, but not the operator's to give
    const link = path.join(env.keysDir, `link_${randomId()}`);
    symlinkSync(outside, link);
    try {
      for (const [option, value, message] of [
        ['IdentityFile', outside, /must name a file in the plugin's keys directory/],
        ['UserKnownHostsFile', path.join(plugin.stateDir, 'volumes.journal'), /must name a file in the plugin's keys directory/],
        ['IdentityFile', link, /is not a readable file of at most 64 KiB in the plugin's keys directory/],
        ['IdentityFile', `${env.keysDir}/missing_${randomId()}`, /is not a readable file of at most 64 KiB in the plugin's keys directory/],
      ] as const) {
        const name = uniq('confined');
        const r = await tryCreateVolume(res, plugin, name, { ...base, [option]: value });
        expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
        expect(r.stderr).toMatch(message);
        expect(await listVolumes(plugin.name)).not.toContain(name);
      }
      // By its name inside the keys directory, a key there works.
      const byName = await createVolume(res, plugin, uniq('key-by-name'), { ...base, IdentityFile: path.basename(env.keyFile) });
      await runWithOk(byName, 'echo named > /data/named.txt');
      expect(await readRemote(remote, 'named.txt')).toBe('named\n');
    } finally {
      rmSync(link, { force: true });
      rmSync(outside, { force: true });
    }
  });

  it('reports a remote directory that does not exist and leaves nothing mounted', async () => {
    const missing = path.join(env.keyRemoteDir, `missing-${randomId()}`);
    const vol = await createVolume(res, plugin, uniq('no-dir'), keyOpts(missing));
    const r = await runWith(vol, 'true');
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr, describeRun(r, plugin)).toMatch(/No such file|does not exist/i);
    expect(await isSshfsMounted(path.join(plugin.mountRoot, vol))).toBe(false);
    expect(existsSync(missing)).toBe(false);
  });
});

describe('sharing and lifecycle', () => {
  it('serves two containers at once on one volume, and shows mounted/references while in use', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('shared'), keyOpts(remote));
    const sleeper = await startSleeper(vol);

    const mountpoint = path.join(plugin.mountRoot, vol);
    expect(await isSshfsMounted(mountpoint)).toBe(true);
    expect(await readAheadKbAt(mountpoint)).toBe(1024); // the plugin's default, not the kernel's 128
    const during = (await inspectVolume(vol)).Status ?? {};
    expect(during.mounted, JSON.stringify(during)).toBe(true);
    expect(during.references, JSON.stringify(during)).toBe(1);
    expect(during.readAheadKb, JSON.stringify(during)).toBe(1024);

    await runWithOk(vol, 'echo "from the second container" > /data/shared.txt');
    // The first container sees the second one's write.
    expect(await dockerOk(['exec', sleeper, 'cat', '/data/shared.txt'])).toBe('from the second container');
    // The second container's exit must not unmount the volume under the first one.
    expect(await isSshfsMounted(mountpoint)).toBe(true);
    expect(await dockerOk(['exec', sleeper, 'sh', '-c', 'echo back > /data/back.txt && cat /data/back.txt'])).toBe('back');
    expect(await readRemote(remote, 'back.txt')).toBe('back\n');

    await stopAndRemove(sleeper);
    await expectUnmounted(vol);
    expect(((await inspectVolume(vol)).Status ?? {}).references).toBe(0);
  });

  // docker cp extracts as root (chown 0:0): with default options that chown reaches a non-root ssh user's server.
  it.each([
    { what: 'default options', extra: {} as Record<string, string> },
    { what: 'idmap=user', extra: { idmap: 'user' } as Record<string, string> },
  ])('handles docker cp into a running container, and unmounts when the container stops ($what)', async ({ extra }) => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('cp'), { ...keyOpts(remote), ...extra });
    const sleeper = await startSleeper(vol);

    const local = path.join(plugin.baseDir, `cp-src-${randomId()}.txt`);
    writeFileSync(local, 'copied in with docker cp\n');
    const cp = await docker(['cp', local, `${sleeper}:/data/copied.txt`]);
    expect(cp.exitCode, describeRun(cp, plugin)).toBe(0);
    rmSync(local, { force: true });

    expect(await readRemote(remote, 'copied.txt')).toBe('copied in with docker cp\n');
    expect(await dockerOk(['exec', sleeper, 'cat', '/data/copied.txt'])).toBe('copied in with docker cp');
    // docker cp mounts again with the container's mount ID and unmounts once: the container keeps its mount.
    const mountpoint = path.join(plugin.mountRoot, vol);
    expect(await isSshfsMounted(mountpoint)).toBe(true);
    const status = (await inspectVolume(vol)).Status ?? {};
    expect(status.mounted, JSON.stringify(status)).toBe(true);
    expect(status.references, JSON.stringify(status)).toBe(1);

    // docker cp out of it as well.
    const outDir = path.join(plugin.baseDir, `cp-out-${randomId()}`);
    const cpOut = await docker(['cp', `${sleeper}:/data/copied.txt`, outDir]);
    expect(cpOut.exitCode, describeRun(cpOut, plugin)).toBe(0);
    expect(readFileSync(outDir, 'utf8')).toBe('copied in with docker cp\n');
    rmSync(outDir, { force: true });
    expect(await isSshfsMounted(mountpoint)).toBe(true);

    await stopAndRemove(sleeper);
    await expectUnmounted(vol);
    expect(((await inspectVolume(vol)).Status ?? {}).references).toBe(0);
    const procMounts = readFileSync('/proc/mounts', 'utf8');
    expect(procMounts.split('\n').filter((l) => l.includes(` ${mountpoint} `))).toEqual([]);
  });

  it('keeps two volumes on the same remote path independent', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const a = await createVolume(res, plugin, uniq('same-a'), keyOpts(remote));
    const b = await createVolume(res, plugin, uniq('same-b'), keyOpts(remote));
    const ia = await inspectVolume(a);
    const ib = await inspectVolume(b);
    expect(ia.Mountpoint).not.toBe(ib.Mountpoint);

    // Both mounted at once (a long-running container on each).
    const sa = await startSleeper(a);
    const sb = await startSleeper(b);
    expect(await isSshfsMounted(ia.Mountpoint)).toBe(true);
    expect(await isSshfsMounted(ib.Mountpoint)).toBe(true);
    await dockerOk(['exec', sa, 'sh', '-c', 'echo written-through-a > /data/ab.txt']);
    expect(await dockerOk(['exec', sb, 'cat', '/data/ab.txt'])).toBe('written-through-a');

    // Stopping A's container unmounts A only.
    await stopAndRemove(sa);
    await expectUnmounted(a);
    expect(await isSshfsMounted(ib.Mountpoint)).toBe(true);
    expect(await dockerOk(['exec', sb, 'cat', '/data/ab.txt'])).toBe('written-through-a');

    // Removing A leaves B (and the files) working.
    await removeVolume(res, a, plugin);
    expect(await listVolumes(plugin.name)).not.toContain(a);
    expect(await dockerOk(['exec', sb, 'sh', '-c', 'echo still-b >> /data/ab.txt && cat /data/ab.txt'])).toBe(
      'written-through-a\nstill-b',
    );
    await stopAndRemove(sb);
    await expectUnmounted(b);
    expect(await runWithOk(b, 'cat /data/ab.txt')).toBe('written-through-a\nstill-b');
    expect(await readRemote(remote, 'ab.txt')).toBe('written-through-a\nstill-b\n');
  });

  // Mounting an empty volume over a directory that exists in the image makes Docker copy that directory (its
  // content, mode and owner, root) into the volume: the chown must not fail just because the ssh user is not root.
  // With -o idmap=user the ssh user's files show as the mounting user's (root): what the container's root expects.
  it.each([
    ['default options', {}, 'cat /tmp/up.txt', 'up'],
    ['-o idmap=user', { idmap: 'user' }, 'stat -c %u /tmp/up.txt', '0'],
  ])('mounts an empty volume over a directory that exists in the image (Docker copy-up), %s', async (_label, extra, check, expected) => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('copyup'), { ...keyOpts(remote), ...extra });
    const r = await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/tmp`, env.image, 'sh', '-c', `echo up > /tmp/up.txt && ${check}`]);
    expect(r.exitCode, describeRun(r, plugin)).toBe(0);
    expect(r.stdout).toBe(expected);
    expect(await readRemote(remote, 'up.txt')).toBe('up\n');
    await expectUnmounted(vol);
  });

  it('keeps an idle volume mounted for unmount_delay: the next container finds it mounted; docker volume rm ends it', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('linger'), { ...keyOpts(remote), unmount_delay: '600' });
    const mountpoint = path.join(plugin.mountRoot, vol);
    const sshfsStarts = () => plugin.logs().split('\n').filter((l) => l.includes(` for volume ${vol} at `)).length;
    await runWithOk(vol, 'echo one > /data/one.txt');
    await waitFor('Docker to unmount the removed container', async () => ((await inspectVolume(vol)).Status ?? {}).references === 0);
    expect(await isSshfsMounted(mountpoint)).toBe(true); // the container is gone, the mount stays
    const idle = (await inspectVolume(vol)).Status ?? {};
    expect(idle, JSON.stringify(idle)).toMatchObject({ mounted: true, references: 0 });
    expect(Date.parse(String(idle.unmountsAt)) - Date.now()).toBeGreaterThan(60_000);
    expect(sshfsStarts()).toBe(1);
    expect(await runWithOk(vol, 'cat /data/one.txt')).toBe('one');
    expect(sshfsStarts()).toBe(1); // the second container used the same sshfs
    await removeVolume(res, vol, plugin);
    expect(await isSshfsMounted(mountpoint)).toBe(false);
    expect(await readRemote(remote, 'one.txt')).toBe('one\n');
  });

  it('unmounts an idle volume once unmount_delay has passed', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('linger-short'), { ...keyOpts(remote), unmount_delay: '1' });
    await runWithOk(vol, 'true');
    await expectUnmounted(vol);
    expect(((await inspectVolume(vol)).Status ?? {}).unmountsAt).toBeUndefined();
  });

  it('leaves the remote files intact on docker volume rm', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('rm'), keyOpts(remote));
    await runWithOk(vol, 'mkdir -p /data/sub && echo keep-me > /data/sub/keep.txt && echo top > /data/top.txt');
    await expectUnmounted(vol);
    const mountpoint = path.join(plugin.mountRoot, vol);

    await removeVolume(res, vol, plugin);
    expect(await readRemote(remote, 'sub/keep.txt')).toBe('keep-me\n');
    expect(await readRemote(remote, 'top.txt')).toBe('top\n');
    expect(existsSync(mountpoint) ? readdirSync(mountpoint) : []).toEqual([]);
    const inspect = await docker(['volume', 'inspect', vol]);
    expect(inspect.exitCode).not.toBe(0);
  });

  it('refuses to remove a volume in use, without unmounting it', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('busy'), keyOpts(remote));
    const sleeper = await startSleeper(vol);
    const r = await docker(['volume', 'rm', vol]);
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr).toMatch(/in use/i);
    expect(await isSshfsMounted(path.join(plugin.mountRoot, vol))).toBe(true);
    expect(await dockerOk(['exec', sleeper, 'sh', '-c', 'echo ok > /data/ok.txt && cat /data/ok.txt'])).toBe('ok');
    await stopAndRemove(sleeper);
    await expectUnmounted(vol);
  });

  it('lists volumes with docker volume ls, and forgets removed ones', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const one = await createVolume(res, plugin, uniq('ls-1'), keyOpts(remote));
    const two = await createVolume(res, plugin, uniq('ls-2'), keyOpts(remote));
    const listed = await listVolumes(plugin.name);
    expect(listed).toEqual(expect.arrayContaining([one, two]));
    await removeVolume(res, one, plugin);
    const after = await listVolumes(plugin.name);
    expect(after).toContain(two);
    expect(after).not.toContain(one);
  });

  it('shows Status in docker volume inspect: mounted, remote, references, no secrets', async () => {
    const remote = await makeRemoteSubdir(env.pwRemoteDir, env.pwUser);
    const vol = await createVolume(res, plugin, uniq('inspect'), pwOpts(remote));
    const before = await inspectVolume(vol);
    expect(before.Status, JSON.stringify(before)).toMatchObject({ mounted: false, references: 0 });
    expect(String(before.Status?.remote)).toContain(`${env.pwUser}@${env.sshHost}:${remote}`);
    expect(JSON.stringify(before.Status)).not.toContain(env.password);
    expect(before.CreatedAt).toBeTruthy();

    const sleeper = await startSleeper(vol);
    const during = await inspectVolume(vol);
    expect(during.Status, JSON.stringify(during)).toMatchObject({ mounted: true, references: 1 });
    expect(JSON.stringify(during.Status)).not.toContain(env.password);
    await stopAndRemove(sleeper);
    await expectUnmounted(vol);
  });
});

describe('option validation', () => {
  const base = (): Record<string, string> => keyOpts(env.keyRemoteDir);
  const refused: { what: string; opts: () => Record<string, string>; message: RegExp }[] = [
    { what: 'ProxyCommand', opts: () => ({ ...base(), ProxyCommand: `touch ${CANARY}` }), message: /ProxyCommand.*not supported/ },
    {
      what: 'ProxyCommand (the classic /tmp/pwned)',
      opts: () => ({ ...base(), ProxyCommand: `touch ${LEGACY_CANARY}` }),
      message: /not supported/,
    },
    { what: 'ssh_command', opts: () => ({ ...base(), ssh_command: `touch ${CANARY}` }), message: /ssh_command.*not supported/ },
    { what: 'a key smuggling ssh_command after a comma', opts: () => ({ ...base(), 'allow_other,ssh_command': 'x' }), message: /not supported/ },
    {
      what: 'a flag value smuggling ssh_command after a comma',
      opts: () => ({ ...base(), allow_other: `yes,ssh_command=touch ${CANARY}` }),
      message: /allow_other/,
    },
    { what: 'a number smuggling an option', opts: () => ({ ...base(), uid: `0,ssh_command=touch ${CANARY}` }), message: /uid/ },
    {
      what: 'a path smuggling an option',
      opts: () => ({ ...base(), IdentityFile: `${env.keyFile},ssh_command=touch ${CANARY}` }),
      message: /IdentityFile/,
    },
    {
      what: 'a cipher smuggling an option',
      opts: () => ({ ...base(), Ciphers: `aes128-ctr,ssh_command=touch ${CANARY}` }),
      message: /Ciphers/,
    },
    {
      what: 'LocalCommand',
      opts: () => ({ ...base(), PermitLocalCommand: 'yes', LocalCommand: `touch ${CANARY}` }),
      message: /not supported/,
    },
    { what: 'StrictHostKeyChecking=no', opts: () => ({ ...base(), StrictHostKeyChecking: 'no' }), message: /StrictHostKeyChecking/ },
    {
      what: 'sshcmd starting with -',
      opts: () => ({ sshcmd: `-oProxyCommand=touch ${CANARY}`, port: String(env.sshPort) }),
      message: /sshcmd/,
    },
    {
      what: 'sshcmd whose host starts with -',
      opts: () => ({ sshcmd: `${env.keyUser}@-oProxyCommand=touch_${path.basename(CANARY)}:/x`, port: String(env.sshPort) }),
      message: /sshcmd/,
    },
    { what: 'a missing sshcmd', opts: () => ({ port: String(env.sshPort), IdentityFile: env.keyFile }), message: /sshcmd/ },
    { what: 'a port that is not a number', opts: () => ({ ...base(), port: '22 -oProxyCommand=x' }), message: /port/ },
  ];

  it.each(refused)('refuses $what with a clear error and creates nothing', async ({ opts, message }) => {
    const vol = uniq('refused');
    const r = await tryCreateVolume(res, plugin, vol, opts());
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(r.stderr, describeRun(r, plugin)).toMatch(message);
    expect(r.stderr).toMatch(/VolumeDriver\.Create/);
    expect(await listVolumes()).not.toContain(vol);
    expect((await docker(['volume', 'inspect', vol])).exitCode).not.toBe(0);
    const list = await pluginRequest(plugin.socketPath, '/VolumeDriver.List', {});
    expect(list.body).not.toContain(vol);
    expect(existsSync(path.join(plugin.mountRoot, vol))).toBe(false);
    expect(existsSync(CANARY)).toBe(false);
    if (!legacyCanaryExisted) expect(existsSync(LEGACY_CANARY)).toBe(false);
  });

  it('lists the allowed options when one is unknown', async () => {
    const r = await tryCreateVolume(res, plugin, uniq('unknown'), { ...base(), NoSuchOption: '1' });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/NoSuchOption/);
    expect(r.stderr).toMatch(/sshcmd/);
    expect(r.stderr).toMatch(/IdentityFile/);
  });

  it('accepts the documented allow-listed options', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('allowed'), {
      ...keyOpts(remote),
      allow_other: '',
      reconnect: 'yes',
      ServerAliveInterval: '5',
      ServerAliveCountMax: '2',
      ConnectTimeout: '5',
      Compression: 'no',
      cache: 'no',
      follow_symlinks: '',
      max_conns: '2',
      mode: '755',
      contain_symlinks: 'false',
      dir_cache: 'no', // one setting with cache: the two must agree
      read_ahead_kb: '256',
    });
    await runWithOk(vol, 'echo allowed > /data/allowed.txt');
    expect(await readRemote(remote, 'allowed.txt')).toBe('allowed\n');
    const sleeper = await startSleeper(vol);
    expect(await readAheadKbAt(path.join(plugin.mountRoot, vol))).toBe(256);
    await stopAndRemove(sleeper);
    await expectUnmounted(vol);
  });

  it('mounts read-only with -o ro', async () => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('ro'), { ...keyOpts(remote), ro: '' });
    const r = await runWith(vol, 'echo nope > /data/nope.txt');
    expect(r.exitCode, describeRun(r, plugin)).not.toBe(0);
    expect(remoteExists(remote, 'nope.txt')).toBe(false);
    await expectUnmounted(vol);
  });
});

describe('plugin state', () => {
  it('keeps its state and key files private to root', async () => {
    const check = (dir: string): string[] => {
      const bad: string[] = [];
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        const mode = statSync(p).mode & 0o777;
        if (entry.isDirectory()) bad.push(...check(p));
        if (entry.isFile() && (mode & 0o077) !== 0) bad.push(`${p} mode ${mode.toString(8)}`);
      }
      return bad;
    };
    expect(check(plugin.stateDir)).toEqual([]);
  });
});
