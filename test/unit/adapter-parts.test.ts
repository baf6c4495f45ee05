import { mkdtemp, readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfig } from '../../adapter/config.js';
import { createExecaRunner } from '../../adapter/execa-runner.js';
import { FakeRunner, formatCall } from '../../adapter/fake-runner.js';
import { createHostFs } from '../../adapter/host-fs.js';
import { parseMountInfo } from '../../adapter/proc-mounts.js';
import { createKeyedLock } from '../../handlers/keyed-lock.js';
import type { Program } from '../../handlers/types.js';

describe('readConfig', () => {
  it('has the documented defaults', () => {
    expect(readConfig({})).toEqual({
      socketPath: '/run/docker/plugins/sshfs.sock',
      stateDir: '/mnt/state',
      mountRoot: '/mnt/volumes',
      debug: false,
      dryRun: false,
      mountTimeoutMs: 20_000,
    });
  });
  it('reads the environment', () => {
    expect(readConfig({ DEBUG: '1', DRY_RUN: 'true', MOUNT_ROOT: '/x/', MOUNT_TIMEOUT: '5' })).toMatchObject({ debug: true, dryRun: true, mountRoot: '/x', mountTimeoutMs: 5000 });
  });
  it('refuses relative paths and silly timeouts', () => {
    expect(() => readConfig({ STATE_DIR: 'state' })).toThrow(/STATE_DIR must be an absolute path/);
    expect(() => readConfig({ MOUNT_TIMEOUT: 'soon' })).toThrow(/MOUNT_TIMEOUT/);
  });
});

describe('parseMountInfo', () => {
  it('reads mount points and types from mountinfo, unescaping spaces', () => {
    const info = [
      '22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw',
      '99 22 0:50 / /mnt/volumes/my\\040vol rw,nosuid - fuse.sshfs u@h:/p rw,user_id=0',
    ].join('\n');
    expect(parseMountInfo(info)).toEqual([
      { mountPoint: '/', fsType: 'ext4' },
      { mountPoint: '/mnt/volumes/my vol', fsType: 'fuse.sshfs' },
    ]);
  });
});

describe('KeyedLock', () => {
  it('serializes one key and lets other keys pass', async () => {
    const lock = createKeyedLock();
    const order: string[] = [];
    let releaseA!: () => void;
    const gate = new Promise<void>((r) => (releaseA = r));
    const a1 = lock.withLock('a', async () => {
      await gate;
      order.push('a1');
    });
    const a2 = lock.withLock('a', async () => void order.push('a2'));
    await lock.withLock('b', async () => void order.push('b'));
    expect(order).toEqual(['b']); // b did not wait for the blocked a
    releaseA();
    await Promise.all([a1, a2]);
    expect(order).toEqual(['b', 'a1', 'a2']);
  });
  it('releases the lock when the function throws', async () => {
    const lock = createKeyedLock();
    await expect(lock.withLock('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await lock.withLock('a', async () => 'next')).toBe('next');
  });
});

describe('FakeRunner (dry run)', () => {
  it('prints the exact command with the password masked and simulates mounts', async () => {
    const printed: string[] = [];
    const fake = new FakeRunner((l) => printed.push(l));
    await fake.run('sshfs', ['u@h:/a b', '/mnt/volumes/v', '-o', 'password_stdin'], { input: 'hunter2\n' });
    expect(printed).toEqual(["sshfs 'u@h:/a b' /mnt/volumes/v -o password_stdin <<< ********"]);
    expect(await fake.isMounted('/mnt/volumes/v')).toBe(true);
    await fake.run('fusermount3', ['-u', '/mnt/volumes/v']);
    expect(await fake.isMounted('/mnt/volumes/v')).toBe(false);
    expect(formatCall({ program: 'ssh', args: ["it's"] })).toBe(`ssh 'it'\\''s'`);
  });
});

describe('execa runner', () => {
  it('runs an allowed program and reports its exit code and output', async () => {
    const r = await createExecaRunner().run('ssh', ['-V']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/OpenSSH/);
  });
  it('refuses any other program', async () => {
    await expect(createExecaRunner().run('sh' as Program, ['-c', 'id'])).rejects.toThrow(/refusing to run sh/);
  });
  it('times out', async () => {
    // ssh to a blackholed port would need the network: a local listener that never answers is enough.
    const net = await import('node:net');
    const server = net.createServer(() => undefined).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    const r = await createExecaRunner().run('ssh', ['-p', String(port), '-o', 'BatchMode=yes', 'x@127.0.0.1', 'true'], { timeoutMs: 500 });
    server.close();
    expect(r.timedOut).toBe(true);
  });
});

describe('host fs', () => {
  it('writes secret files 0600, replaces them atomically, and never removes a non-empty dir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-fs-'));
    const fs = createHostFs();
    await fs.writeSecretFile(join(dir, 'keys', 'v.key'), 'one');
    await fs.writeSecretFile(join(dir, 'keys', 'v.key'), 'two');
    expect(await readFile(join(dir, 'keys', 'v.key'), 'utf8')).toBe('two');
    expect((await stat(join(dir, 'keys', 'v.key'))).mode & 0o777).toBe(0o600);
    expect(await readdir(join(dir, 'keys'))).toEqual(['v.key']);
    await mkdir(join(dir, 'mp'));
    await writeFile(join(dir, 'mp', 'data'), 'keep me');
    expect(await fs.removeEmptyDir(join(dir, 'mp'))).toBe('not-empty');
    expect(await readFile(join(dir, 'mp', 'data'), 'utf8')).toBe('keep me');
    expect(await fs.removeEmptyDir(join(dir, 'gone'))).toBe('absent');
    await fs.ensureDir(join(dir, 'empty'));
    expect(await fs.removeEmptyDir(join(dir, 'empty'))).toBe('removed');
    expect(await fs.exists(join(dir, 'empty'))).toBe(false);
  });
});
