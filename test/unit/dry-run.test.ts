// DRY_RUN as main.ts wires it (startPlugin with the environment's configuration), driven over its Unix socket as
// dockerd would: it prints the exact commands, runs none, and leaves the state directory and the mount root as they
// were.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readConfig } from '../../adapter/config.js';
import { FakeRunner } from '../../adapter/fakes/fake-runner.js';
import { startPlugin } from '../../adapter/docker/serve.js';
import type { RunningPlugin } from '../../adapter/plugin.js';
import { pluginRequest } from '../../scripts/lib/plugin-request.js';

/** Every path below dir with its mode, size, mtime and content digest: any write, chmod or new file changes it. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, entry.name);
      const s = await stat(p);
      const digest = entry.isFile() ? createHash('sha256').update(await readFile(p)).digest('hex') : '';
      out.push(`${p} ${s.mode.toString(8)} ${s.size} ${s.mtimeMs} ${digest}`);
      if (entry.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

describe('DRY_RUN', () => {
  let plugin: RunningPlugin | undefined;
  afterEach(async () => {
    await plugin?.stop('test over', 100);
    plugin = undefined;
  });

  it('prints the exact commands, masks the password, runs nothing and writes nothing on the host', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-dry-'));
    // A state directory with a volume of an earlier real run, and a keys directory with the operator's default key.
    const stateDir = join(dir, 'state');
    await mkdir(stateDir, { mode: 0o755 });
    await writeFile(join(stateDir, 'volumes.json'), JSON.stringify({ version: 1, volumes: {} }));
    await mkdir(join(dir, 'keys'));
    await writeFile(join(dir, 'keys', 'id_ed25519'), 'not really a key\n', { mode: 0o600 });
    const before = await snapshot(dir);

    const config = readConfig({
      DRY_RUN: '1',
      STATE_DIR: stateDir,
      KEYS_DIR: join(dir, 'keys'),
      MOUNT_ROOT: join(dir, 'mnt'),
      SOCKET_PATH: join(tmpdir(), `sshfs-dry-${process.pid}.sock`),
    });
    const lines: string[] = [];
    const log = { debug: (m: string) => lines.push(m), info: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
    plugin = await startPlugin(config, log);
    await plugin.recovered;
    expect(plugin.deps.runner).toBeInstanceOf(FakeRunner);
    const post = async (route: string, body: object) => JSON.parse((await pluginRequest(config.socketPath, route, body)).body) as Record<string, unknown>;

    expect(await post('/VolumeDriver.Create', { Name: 'v', Opts: { sshcmd: 'u@h:/p', password: 'hunter2' } })).toEqual({ Err: '' });
    expect(await post('/VolumeDriver.Create', { Name: 'k', Opts: { sshcmd: 'u@h:/q', key: 'not a key' } })).toMatchObject({ Err: /private key/ });
    expect(await post('/VolumeDriver.Create', { Name: 'd', Opts: { sshcmd: 'u@h:/d' } })).toEqual({ Err: '' });
    expect(await post('/VolumeDriver.Mount', { Name: 'v', ID: 'x' })).toEqual({ Mountpoint: join(dir, 'mnt', 'v'), Err: '' });
    expect(await post('/VolumeDriver.Mount', { Name: 'd', ID: 'x' })).toEqual({ Mountpoint: join(dir, 'mnt', 'd'), Err: '' });
    expect(await post('/VolumeDriver.Get', { Name: 'v' })).toMatchObject({ Volume: { Status: { mounted: true } } });
    expect(await post('/VolumeDriver.List', {})).toMatchObject({ Volumes: [{ Name: 'v' }, { Name: 'd' }] });
    expect(await post('/VolumeDriver.Unmount', { Name: 'v', ID: 'x' })).toEqual({ Err: '' });
    expect(await post('/VolumeDriver.Remove', { Name: 'v' })).toEqual({ Err: '' });

    const commands = lines.filter((l) => l.startsWith('dry run: '));
    expect(commands.slice(0, 3)).toEqual([
      `dry run: sshfs u@h:/p ${join(dir, 'mnt', 'v')} -f -o reconnect -o allow_other -o idmap=user -o password_stdin ` +
        `-o 'ssh_command=ssh -E ${join(stateDir, 'logs', 'v.ssh.log')} -F none' -o UserKnownHostsFile=${join(stateDir, 'known_hosts')} ` +
        '-o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o IdentityAgent=none -o IdentitiesOnly=yes ' +
        '-o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o ConnectTimeout=10 -o StrictHostKeyChecking=accept-new ' +
        "-o 'Ciphers=^aes128-gcm@openssh.com' -o Compression=no -o GSSAPIAuthentication=no " +
        '-o IdentityFile=none -o PubkeyAuthentication=no ' +
        "-o 'PreferredAuthentications=password\\,keyboard-interactive' -o NumberOfPasswordPrompts=1 <<< ********",
      `dry run: echo 1024 > /sys/class/bdi/<device of ${join(dir, 'mnt', 'v')}>/read_ahead_kb`,
      // The volume without a credential option logs in with the operator's default key, read from the real keys dir,
      // through a shared login (its master first).
      expect.stringMatching(new RegExp(`^dry run: ssh -E ${join(stateDir, 'cm')}/[0-9a-f]{21}\\.log -F none -N .*IdentityFile=${join(dir, 'keys', 'id_ed25519')}`)),
    ]);
    expect(commands).toContain(`dry run: fusermount3 -u ${join(dir, 'mnt', 'v')}`);
    expect(lines.join('\n')).not.toContain('hunter2');
    // Nothing on the host changed: no state written, no journal, no lock, no mountpoint, no key or log file.
    expect(await snapshot(dir)).toEqual(before);
  });
});
