import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../adapter/app.js';
import { readConfig } from '../../adapter/config.js';
import { createDeps } from '../../adapter/deps.js';
import { MemoryStore } from '../../state/memory-store.js';

describe('DRY_RUN', () => {
  it('prints the exact commands, masks the password, runs nothing and answers as if they succeeded', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-dry-'));
    const config = readConfig({ DRY_RUN: '1', STATE_DIR: join(dir, 'state'), MOUNT_ROOT: join(dir, 'mnt') });
    const lines: string[] = [];
    const log = { debug: (m: string) => lines.push(m), info: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
    const app = createApp(createDeps(config, new MemoryStore(), log));
    const post = async (route: string, body: object) =>
      (await app.request(route, { method: 'POST', body: JSON.stringify(body) })).json() as Promise<Record<string, unknown>>;

    expect(await post('/VolumeDriver.Create', { Name: 'v', Opts: { sshcmd: 'u@h:/p', password: 'hunter2' } })).toEqual({ Err: '' });
    expect(await post('/VolumeDriver.Mount', { Name: 'v', ID: 'x' })).toEqual({ Mountpoint: join(dir, 'mnt', 'v'), Err: '' });
    expect(await post('/VolumeDriver.Get', { Name: 'v' })).toMatchObject({ Volume: { Status: { mounted: true } } });
    expect(await post('/VolumeDriver.Unmount', { Name: 'v', ID: 'x' })).toEqual({ Err: '' });

    const commands = lines.filter((l) => l.startsWith('dry run: '));
    expect(commands).toEqual([
      `dry run: sshfs u@h:/p ${join(dir, 'mnt', 'v')} -o reconnect -o allow_other -o idmap=user -o password_stdin ` +
        `-o 'ssh_command=ssh -E ${join(dir, 'state', 'logs', 'v.ssh.log')} -F none' -o UserKnownHostsFile=${join(dir, 'state', 'known_hosts')} ` +
        '-o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o IdentityAgent=none -o IdentitiesOnly=yes ' +
        '-o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o ConnectTimeout=10 -o StrictHostKeyChecking=accept-new ' +
        "-o 'Ciphers=^aes128-gcm@openssh.com' -o Compression=no -o GSSAPIAuthentication=no " +
        '-o IdentityFile=none -o PubkeyAuthentication=no ' +
        "-o 'PreferredAuthentications=password\\,keyboard-interactive' -o NumberOfPasswordPrompts=1 <<< ********",
      `dry run: echo 1024 > /sys/class/bdi/<device of ${join(dir, 'mnt', 'v')}>/read_ahead_kb`,
      `dry run: fusermount3 -u ${join(dir, 'mnt', 'v')}`,
    ]);
    expect(lines.join('\n')).not.toContain('hunter2');
  });
});
