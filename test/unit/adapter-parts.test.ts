import { chown, mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfig } from '../../adapter/config.js';
import { createExecaRunner } from '../../adapter/execa-runner.js';
import { FakeRunner, formatCall } from '../../adapter/fake-runner.js';
import { createHostFs } from '../../adapter/host-fs.js';
import { createHostView } from '../../adapter/deps.js';
import { bootTimeSeconds, startSecondsAfterBoot } from '../../adapter/processes.js';
import { parseMountInfo } from '../../adapter/proc-mounts.js';
import { statInChild } from '../../adapter/read-ahead.js';
import { bindSourceOf, hostDirsFor } from '../../adapter/host-paths.js';
import { createKeyedLock } from '../../handlers/keyed-lock.js';
import type { Program } from '../../handlers/types.js';

describe('readConfig', () => {
  it('has the documented defaults', () => {
    expect(readConfig({})).toEqual({
      socketPath: '/run/docker/plugins/sshfs.sock',
      stateDir: '/mnt/state',
      keysDir: '/keys',
      mountRoot: '/mnt/volumes',
      debug: false,
      dryRun: false,
      mountTimeoutMs: 20_000,
      sharedConnectionIdleSeconds: 300,
    });
  });
  it('reads the environment', () => {
    expect(readConfig({ DEBUG: '1', DRY_RUN: 'true', MOUNT_ROOT: '/x/', MOUNT_TIMEOUT: '5' })).toMatchObject({ debug: true, dryRun: true, mountRoot: '/x', mountTimeoutMs: 5000 });
  });
  it('takes the socket systemd passed only when LISTEN_PID names this process, and only one', () => {
    expect(readConfig({ LISTEN_FDS: '1', LISTEN_PID: '4242' }, 4242).listenFd).toBe(3);
    // Variables inherited from a parent that was socket-activated are not ours.
    expect(readConfig({ LISTEN_FDS: '1', LISTEN_PID: '17' }, 4242).listenFd).toBeUndefined();
    expect(readConfig({}, 4242).listenFd).toBeUndefined();
    expect(() => readConfig({ LISTEN_FDS: '2', LISTEN_PID: '4242' }, 4242)).toThrow(/one ListenStream=/);
  });
  it('refuses relative paths and silly timeouts', () => {
    expect(() => readConfig({ STATE_DIR: 'state' })).toThrow(/STATE_DIR must be an absolute path/);
    expect(() => readConfig({ MOUNT_TIMEOUT: 'soon' })).toThrow(/MOUNT_TIMEOUT/);
    expect(readConfig({ SHARED_CONNECTION_IDLE: '0' }).sharedConnectionIdleSeconds).toBe(0);
    expect(() => readConfig({ SHARED_CONNECTION_IDLE: '1.5' })).toThrow(/SHARED_CONNECTION_IDLE/);
    expect(() => readConfig({ STATE_DIR: '/var/lib/my state,x' })).toThrow(/no spaces or commas/);
    expect(() => readConfig({ KEYS_DIR: '/my keys' })).toThrow(/KEYS_DIR may hold only/);
    // Volumes may name files in KEYS_DIR: it must not reach the plugin's own state.
    expect(() => readConfig({ KEYS_DIR: '/mnt/state' })).toThrow(/must not contain one another/);
    expect(() => readConfig({ KEYS_DIR: '/mnt' })).toThrow(/must not contain one another/);
    expect(() => readConfig({ KEYS_DIR: '/mnt/state/keys' })).toThrow(/must not contain one another/);
    expect(() => readConfig({ KEYS_DIR: '/' })).toThrow(/must not contain one another/);
  });
});

describe('parseMountInfo', () => {
  it('reads mount points and types from mountinfo, unescaping spaces', () => {
    const info = [
      '22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw',
      '99 22 0:50 / /mnt/volumes/my\\040vol rw,nosuid - fuse.sshfs u@h:/p rw,user_id=0',
    ].join('\n');
    expect(parseMountInfo(info)).toEqual([
      { mountPoint: '/', fsType: 'ext4', device: '0:21' },
      { mountPoint: '/mnt/volumes/my vol', fsType: 'fuse.sshfs', device: '0:50' },
    ]);
  });
});

describe('read-ahead through /sys', () => {
  it("writes the mount's own bdi entry, and creates nothing where there is none", async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    const sys = await mkdtemp(join(tmpdir(), 'sys-'));
    // The mountpoint must exist: the table stats it (in a child process) before it writes.
    const mp = await mkdtemp(join(tmpdir(), 'mp-'));
    await mkdir(join(proc, 'self'));
    await writeFile(join(proc, 'self', 'mountinfo'), `22 1 0:21 / / rw - ext4 /dev/vda rw\n99 22 0:50 / ${mp} rw - fuse.sshfs u@h:/p rw\n`);
    for (const dev of ['0:21', '0:50']) {
      await mkdir(join(sys, 'class', 'bdi', dev), { recursive: true });
      await writeFile(join(sys, 'class', 'bdi', dev, 'read_ahead_kb'), '128\n');
    }
    const table = createHostView(proc, sys).readAhead;
    await table.set(mp, 1024);
    expect(await readFile(join(sys, 'class', 'bdi', '0:50', 'read_ahead_kb'), 'utf8')).toBe('1024\n');
    expect(await readFile(join(sys, 'class', 'bdi', '0:21', 'read_ahead_kb'), 'utf8')).toBe('128\n');
    expect(await table.get(mp)).toBe(1024);
    expect(await table.get('/')).toBe(128);
    expect(await table.get('/mnt/volumes/other')).toBeUndefined();
    await expect(table.set('/mnt/volumes/other', 1024)).rejects.toThrow(/not mounted/);
    await writeFile(join(proc, 'self', 'mountinfo'), `99 22 0:51 / ${mp} rw - fuse.sshfs u@h:/p rw\n`);
    await expect(table.set(mp, 1024)).rejects.toThrow(/ENOENT/);
    // A mountpoint that does not answer (here: does not exist) is never written to.
    await writeFile(join(proc, 'self', 'mountinfo'), '99 22 0:50 / /mnt/volumes/gone rw - fuse.sshfs u@h:/p rw\n');
    await expect(table.set('/mnt/volumes/gone', 4096)).rejects.toThrow(/did not answer/);
    expect(await readFile(join(sys, 'class', 'bdi', '0:50', 'read_ahead_kb'), 'utf8')).toBe('1024\n');
    expect(await readdir(join(sys, 'class', 'bdi'))).toEqual(['0:21', '0:50']);
  });
});

describe('statInChild', () => {
  it('answers whether a path can be stat-ed, and gives up on a child that takes too long', async () => {
    expect(await statInChild(tmpdir())).toBe(true);
    expect(await statInChild('/nonexistent/path')).toBe(false);
    // Node needs far more than 1 ms to start: the child is killed, and the caller is not held.
    expect(await statInChild(tmpdir(), 1)).toBe(false);
  });
});

describe('ssh start time from /proc', () => {
  // field 22 (starttime, in 1/100 s since boot) of /proc/<pid>/stat; the comm field may hold spaces and parentheses.
  const stat = (ticks: number, comm = 'ssh') =>
    `42 (${comm}) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${ticks} 12345678 100 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0`;

  it('reads the start time and the boot time', () => {
    expect(startSecondsAfterBoot(stat(12_345))).toBe(123.45);
    expect(startSecondsAfterBoot(stat(500, 'odd) name (x'))).toBe(5);
    expect(bootTimeSeconds('1234.56 4567.89\n', 1_700_001_234_560)).toBeCloseTo(1_700_000_000, 6);
    expect(bootTimeSeconds('', 0)).toBeUndefined();
  });

  it('finds the latest ssh writing to a volume log, and calls it a reconnect when it started after sshfs', async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    // Booted at 1_700_000_000 s: the uptime file is written with the time now.
    await writeFile(join(proc, 'uptime'), `${(Date.now() / 1000 - 1_700_000_000).toFixed(2)} 0.00\n`);
    const add = async (pid: number, argv: string[], ticks: number) => {
      await mkdir(join(proc, String(pid)));
      await writeFile(join(proc, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
      await writeFile(join(proc, String(pid), 'stat'), stat(ticks));
    };
    // sshfs forks its first ssh, then daemonizes: the daemon starts after that ssh.
    await add(10, ['ssh', '-E', '/state/logs/v.ssh.log', '-x', 'host'], 1_000);
    await add(11, ['sshfs', 'h:/p', '/mnt/v', '-o', 'ssh_command=ssh -E /state/logs/v.ssh.log -F none'], 1_020);
    await add(12, ['ssh', '-E', '/state/logs/other.ssh.log', 'host'], 9_000);
    await add(13, ['sshfs', 'h:/q', '/mnt/w', '-o', 'ssh_command=ssh -E /state/logs/w.ssh.log -F none'], 9_000);
    const table = createHostView(proc).processes;
    const at = async () => {
      const c = await table.sshConnection('/state/logs/v.ssh.log');
      return { seconds: Math.round((c?.startedAt.getTime() ?? 0) / 1000), reconnected: c?.reconnected };
    };
    expect(await at()).toEqual({ seconds: 1_700_000_000 + 10, reconnected: false });
    // The link dropped (its ssh exited) and sshfs ran ssh again.
    await rm(join(proc, '10'), { recursive: true });
    await add(14, ['ssh', '-E', '/state/logs/v.ssh.log', '-x', 'host'], 3_000);
    expect(await at()).toEqual({ seconds: 1_700_000_000 + 30, reconnected: true });
    expect(await table.sshConnection('/state/logs/none.ssh.log')).toBeUndefined();
  });
});

describe('mount state from /proc', () => {
  it('calls a mount stale once its sshfs is gone, and finds a new sshfs for it', async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    await mkdir(join(proc, 'self'));
    await writeFile(join(proc, 'self', 'mountinfo'), '99 22 0:50 / /mnt/volumes/v rw - fuse.sshfs u@h:/p rw\n');
    const sshfs = async (pid: number) => {
      await mkdir(join(proc, String(pid)));
      await writeFile(join(proc, String(pid), 'cmdline'), ['sshfs', 'u@h:/p', '/mnt/volumes/v', ''].join('\0'));
    };
    const table = createHostView(proc).mounts;
    await sshfs(40);
    expect(await table.state('/mnt/volumes/v')).toBe('mounted');
    expect(await table.state('/mnt/volumes/v')).toBe('mounted'); // from the cached pid
    await rm(join(proc, '40'), { recursive: true });
    expect(await table.state('/mnt/volumes/v')).toBe('stale');
    await sshfs(41);
    expect(await table.state('/mnt/volumes/v')).toBe('mounted');
    expect(await table.state('/mnt/volumes/other')).toBe('absent');
    // Any local user can start a process named like sshfs serving our mountpoint: only one of ours counts.
    await rm(join(proc, '41'), { recursive: true });
    await sshfs(42);
    await chown(join(proc, '42'), 65534, 65534);
    expect(await table.state('/mnt/volumes/v')).toBe('stale');
  });

  it('scans past the first batch of processes and picks the newest sshfs of a path (pids are not in order on disk)', async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    await mkdir(join(proc, 'self'));
    await writeFile(join(proc, 'self', 'mountinfo'), '99 22 0:50 / /mnt/volumes/v rw - fuse.sshfs u@h:/p rw\n');
    const add = async (pid: number, argv: string[]) => {
      await mkdir(join(proc, String(pid)));
      await writeFile(join(proc, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
    };
    for (let pid = 1000; pid < 1300; pid++) await add(pid, ['sleep', '1000']); // several batches of other processes
    await add(7, ['sshfs', 'u@h:/p', '/mnt/volumes/v']); // the oldest: scanned last
    const table = createHostView(proc).mounts;
    expect(await table.state('/mnt/volumes/v')).toBe('mounted');
    await add(9, ['sshfs', 'u@h:/p', '/mnt/volumes/v']);
    await rm(join(proc, '7'), { recursive: true });
    expect(await table.state('/mnt/volumes/v')).toBe('mounted'); // the cached pid is gone: scans again, finds 9
    await rm(join(proc, '9'), { recursive: true });
    expect(await table.state('/mnt/volumes/v')).toBe('stale');
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
    const fake = new FakeRunner(undefined, (l) => printed.push(l));
    await fake.run('sshfs', ['u@h:/a b', '/mnt/volumes/v', '-o', 'password_stdin'], { input: 'hunter2\n' });
    expect(printed).toEqual(["sshfs 'u@h:/a b' /mnt/volumes/v -o password_stdin <<< ********"]);
    expect(await fake.table.isMounted('/mnt/volumes/v')).toBe(true);
    await fake.run('fusermount3', ['-u', '/mnt/volumes/v']);
    expect(await fake.table.isMounted('/mnt/volumes/v')).toBe(false);
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

  it('gives sshfs and ssh none of its own environment, and ends the ssh of an sshfs that timed out', async () => {
    const net = await import('node:net');
    // A server that sends its banner, then never another byte: ssh waits in the key exchange (no keepalives).
    const server = net.createServer((s) => s.write('SSH-2.0-OpenSSH_9.2p1\r\n')).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-group-'));
    const log = join(dir, 'marker.ssh.log');
    const mine = () => processesWith(log);
    process.env.SSH_AUTH_SOCK = join(dir, 'agent.sock');
    try {
      const run = createExecaRunner().run(
        'sshfs',
        [`u@127.0.0.1:/`, dir, '-p', String(port), '-o', `ssh_command=ssh -E ${log} -F none`, '-o', 'ServerAliveInterval=0', '-o', 'ConnectTimeout=60'],
        { timeoutMs: 3_000, endGroupOnFailure: true },
      );
      await waitUntil(async () => (await mine()).some((p) => p.argv[0] === 'ssh'));
      const ssh = (await mine()).find((p) => p.argv[0] === 'ssh');
      const environ = await readFile(`/proc/${ssh?.pid}/environ`, 'utf8');
      expect(environ).not.toContain('SSH_AUTH_SOCK');
      expect(environ).toMatch(/(^|\0)PATH=/);
      const r = await run;
      expect(r.timedOut).toBe(true);
      await waitUntil(async () => (await mine()).length === 0);
    } finally {
      delete process.env.SSH_AUTH_SOCK;
      server.close();
    }
  });
});

/** Live (not zombie) processes whose command line contains needle. */
async function processesWith(needle: string): Promise<{ pid: string; argv: string[] }[]> {
  const found = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^[0-9]+$/.test(d))) {
    try {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
      const state = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.[0];
      if (cmdline.includes(needle) && state !== 'Z') found.push({ pid, argv: cmdline.split('\0') });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

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
    expect(await fs.fileInfo(join(dir, 'empty'))).toBeUndefined();
  });
});

describe('bindSourceOf / hostDirsFor: where the state directory is on the host', () => {
  const info = [
    '600 580 0:48 / / rw,relatime - overlay overlay rw',
    '610 600 8:1 /var/lib/docker-volume-sshfs/state /mnt/state rw,relatime - ext4 /dev/sda1 rw',
    '611 600 8:1 /srv/my\\040keys /keys ro,relatime - ext4 /dev/sda1 rw',
  ].join('\n');
  it('reads the root field of the bind mount at the directory (a managed plugin)', () => {
    expect(bindSourceOf('/mnt/state', info)).toBe('/var/lib/docker-volume-sshfs/state');
    expect(bindSourceOf('/keys', info)).toBe('/srv/my keys');
  });
  it('gives nothing where the directory is not a bind mount of its own (host mode): the path is the host\'s', () => {
    expect(bindSourceOf('/var/lib/sshfs/state', info)).toBeUndefined();
    expect(bindSourceOf('/', info)).toBeUndefined();
    expect(bindSourceOf('/mnt/state', '')).toBeUndefined();
  });
  it('reads /proc/self/mountinfo, or a given file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hostdirs-'));
    await writeFile(join(dir, 'mountinfo'), info);
    expect(await hostDirsFor(['/mnt/state', '/nowhere'], join(dir, 'mountinfo'))).toEqual({ '/mnt/state': '/var/lib/docker-volume-sshfs/state' });
    expect(await hostDirsFor(['/mnt/state'], join(dir, 'missing'))).toEqual({});
    await rm(dir, { recursive: true });
  });
});
