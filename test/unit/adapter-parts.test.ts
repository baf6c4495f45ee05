import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfig } from '../../adapter/config.js';
import { createExecaRunner } from '../../adapter/host/execa-runner.js';
import { FakeRunner, formatCall } from '../../adapter/fakes/fake-runner.js';
import { MemoryFs } from '../../adapter/fakes/memory-fs.js';
import { createHostFs } from '../../adapter/host/host-fs.js';
import { createHostView, openDeps } from '../../adapter/deps.js';
import { createMountProbe, POOL_PROBES, statInChild } from '../../adapter/host/mount-probe.js';
import { bootTimeSeconds, parseStat, startSecondsAfterBoot } from '../../adapter/host/processes.js';
import { fuseConnectionDir, parseMountInfo } from '../../adapter/host/proc-mounts.js';
import { bindSourceOf, hostDirsFor } from '../../adapter/host/host-paths.js';
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
      { mountPoint: '/', root: '/', fsType: 'ext4', device: '0:21' },
      { mountPoint: '/mnt/volumes/my vol', root: '/', fsType: 'fuse.sshfs', device: '0:50' },
    ]);
  });
});

describe('read-ahead through /sys', () => {
  it("writes the mount's own bdi entry, and creates nothing where there is none", async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    const sys = await mkdtemp(join(tmpdir(), 'sys-'));
    const mp = '/mnt/volumes/v';
    await mkdir(join(proc, 'self'));
    await writeFile(join(proc, 'self', 'mountinfo'), `22 1 0:21 / / rw - ext4 /dev/vda rw\n99 22 0:50 / ${mp} rw - fuse.sshfs u@h:/p rw\n`);
    for (const dev of ['0:21', '0:50']) {
      await mkdir(join(sys, 'class', 'bdi', dev), { recursive: true });
      await writeFile(join(sys, 'class', 'bdi', dev, 'read_ahead_kb'), '128\n');
    }
    const table = createHostView(new FakeRunner(), proc, sys).readAhead;
    await table.set(mp, 1024);
    expect(await readFile(join(sys, 'class', 'bdi', '0:50', 'read_ahead_kb'), 'utf8')).toBe('1024\n');
    expect(await readFile(join(sys, 'class', 'bdi', '0:21', 'read_ahead_kb'), 'utf8')).toBe('128\n');
    expect(await table.get(mp)).toBe(1024);
    expect(await table.get('/')).toBe(128);
    expect(await table.get('/mnt/volumes/other')).toBeUndefined();
    // The device a caller has just seen is used as given: no second look at the mount table.
    expect(await table.get(mp, '0:21')).toBe(128);
    expect(await table.get(mp, '0:99')).toBeUndefined();
    await expect(table.set('/mnt/volumes/other', 1024)).rejects.toThrow(/not mounted/);
    // A mount whose bdi entry does not exist: nothing is created.
    await writeFile(join(proc, 'self', 'mountinfo'), `99 22 0:51 / ${mp} rw - fuse.sshfs u@h:/p rw\n`);
    await expect(table.set(mp, 1024)).rejects.toThrow(/ENOENT/);
    expect(await readdir(join(sys, 'class', 'bdi'))).toEqual(['0:21', '0:50']);
  });
});

describe('the fresh-mount probe', () => {
  it('answers whether a path can be stat-ed, in the thread pool or in a child', async () => {
    const probes = createMountProbe();
    expect(await probes.probe(tmpdir(), 5_000)).toEqual({ ok: true });
    expect(await probes.probe('/nonexistent/path', 5_000)).toEqual({ ok: false, timedOut: false, error: 'ENOENT' });
    expect(await statInChild(tmpdir(), 10_000)).toEqual({ ok: true });
    expect((await statInChild('/nonexistent/path', 10_000)).ok).toBe(false);
    // Node needs far more than 1 ms to start: the child is killed, and the caller is not held.
    expect(await statInChild(tmpdir(), 1)).toMatchObject({ ok: false });
    expect(probes.inPool()).toBe(0);
  });

  it('uses at most POOL_PROBES pool threads at once, then children', async () => {
    const probes = createMountProbe();
    const results = await Promise.all(Array.from({ length: POOL_PROBES + 2 }, () => probes.probe(tmpdir(), 10_000)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(probes.inPool()).toBe(0);
  });
});

describe('processes from /proc/<pid>/stat', () => {
  // field 22 (starttime, in 1/100 s since boot) of /proc/<pid>/stat; the comm field may hold spaces and parentheses.
  const stat = (ticks: number, comm = 'ssh', ppid = 1, state = 'S', pgrp = 42) =>
    `42 (${comm}) ${state} ${ppid} ${pgrp} 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${ticks} 12345678 100 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0`;

  it('reads the start time, the parent and the boot time', () => {
    expect(startSecondsAfterBoot(stat(12_345))).toBe(123.45);
    expect(startSecondsAfterBoot(stat(500, 'odd) name (x'))).toBe(5);
    expect(parseStat(stat(7, 'a b) c', 99, 'D', 5))).toEqual({ state: 'D', ppid: 99, pgrp: 5, startTicks: 7 });
    expect(bootTimeSeconds('1234.56 4567.89\n', 1_700_001_234_560)).toBeCloseTo(1_700_000_000, 6);
    expect(bootTimeSeconds('', 0)).toBeUndefined();
  });

  it('knows a process by pid and start time, finds the ssh in its process group, and never reads a command line', async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    await writeFile(join(proc, 'uptime'), `${(Date.now() / 1000 - 1_700_000_000).toFixed(2)} 0.00\n`);
    const add = async (pid: number, ticks: number, pgrp = pid, state = 'S') => {
      await mkdir(join(proc, String(pid)), { recursive: true });
      await writeFile(join(proc, String(pid), 'stat'), stat(ticks, 'x', 1, state, pgrp));
      // A command line that claims anything: it is never read.
      await writeFile(join(proc, String(pid), 'cmdline'), 'sshfs\0/mnt/volumes/v\0');
    };
    await add(10, 1_000);
    await add(11, 1_001, 10); // sshfs's ssh: double-forked (its parent is init), in sshfs's group
    await add(12, 1_002); // anything else, in a group of its own
    const table = createHostView(new FakeRunner(), proc).processes;
    const sshfs = { pid: 10, startTicks: 1_000 };
    expect(await table.alive(sshfs)).toBe(true);
    expect(await table.identify(10)).toEqual(sshfs);
    expect(await table.groupMember(sshfs)).toEqual({ pid: 11, startTicks: 1_001 });
    expect(await table.groupMember(sshfs)).toEqual({ pid: 11, startTicks: 1_001 }); // remembered while it lives
    expect(Math.round(table.startedAt({ pid: 11, startTicks: 1_001 }).getTime() / 1000)).toBe(1_700_000_010);
    // A reconnect: the first ssh exited, sshfs ran another.
    await rm(join(proc, '11'), { recursive: true });
    await add(14, 3_000, 10);
    expect(await table.groupMember(sshfs)).toEqual({ pid: 14, startTicks: 3_000 });
    await writeFile(join(proc, '14', 'stat'), stat(3_000, 'ssh', 1, 'Z', 10));
    expect(await table.groupMember(sshfs)).toBeUndefined(); // the link is down
    // The pid now names another process (started later), or a zombie: not ours, not alive.
    await writeFile(join(proc, '10', 'stat'), stat(5_000, 'sshfs'));
    expect(await table.alive(sshfs)).toBe(false);
    expect(await table.groupMember(sshfs)).toBeUndefined();
    await writeFile(join(proc, '10', 'stat'), stat(1_000, 'sshfs', 1, 'Z'));
    expect(await table.alive(sshfs)).toBe(false);
    await rm(join(proc, '10'), { recursive: true });
    expect(await table.alive(sshfs)).toBe(false);
    expect(await table.identify(10)).toBeUndefined();
  });

  it("looks for sshfs's ssh among the next pids first, and in all of /proc when it is not there", async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    await writeFile(join(proc, 'uptime'), '100.00 0.00\n');
    const add = async (pid: number, ticks: number, pgrp = pid, state = 'S') => {
      await mkdir(join(proc, String(pid)), { recursive: true });
      await writeFile(join(proc, String(pid), 'stat'), stat(ticks, 'x', 1, state, pgrp));
    };
    await add(500, 1_000); // sshfs
    await add(501, 1_000); // a neighbour in a group of its own: not its ssh
    await add(502, 1_000, 500, 'Z'); // sshfs's intermediate fork, exited: not its ssh
    await add(503, 1_001, 500); // the ssh
    // One of sshfs's threads, started later: /proc/<tid>/stat answers for threads too (same group), though /proc lists
    // only processes. Not its ssh.
    await add(504, 1_003, 500);
    await mkdir(join(proc, '500', 'task', '504'), { recursive: true });
    const table = createHostView(new FakeRunner(), proc).processes;
    expect(await table.groupMember({ pid: 500, startTicks: 1_000 })).toEqual({ pid: 503, startTicks: 1_001 });
    // Found there, /proc is not scanned: another member far away (a moment of two ssh at once) is not looked at.
    const fresh = createHostView(new FakeRunner(), proc).processes;
    await add(900, 1_005, 500);
    expect(await fresh.groupMember({ pid: 500, startTicks: 1_000 })).toEqual({ pid: 503, startTicks: 1_001 });
    await rm(join(proc, '900'), { recursive: true });
    // Pids taken by other processes in between: the ssh is far from sshfs's pid, and found by the scan.
    await add(600, 2_000); // another sshfs
    for (let pid = 601; pid < 640; pid++) await add(pid, 2_000);
    await add(640, 2_001, 600);
    expect(await table.groupMember({ pid: 600, startTicks: 2_000 })).toEqual({ pid: 640, startTicks: 2_001 });
    await rm(join(proc, '640'), { recursive: true });
    expect(await table.groupMember({ pid: 600, startTicks: 2_000 })).toBeUndefined();
  });

  it("finds a shared login's master from what it says over its socket, and remembers it while it lives", async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    await writeFile(join(proc, 'uptime'), '100.00 0.00\n');
    await mkdir(join(proc, '77'));
    await writeFile(join(proc, '77', 'stat'), stat(900));
    const runner = new FakeRunner();
    runner.script = (call) => (call.args.includes('check') ? { exitCode: 0, stderr: 'Master running (pid=77)' } : undefined);
    const table = createHostView(runner, proc).processes;
    expect(await table.sshMaster('/state/cm/abc0')).toBeDefined();
    expect(await table.sshMaster('/state/cm/abc0')).toBeDefined();
    expect(runner.calls.filter((c) => c.args.includes('check'))).toHaveLength(1); // the second from the remembered pid
    await rm(join(proc, '77'), { recursive: true });
    runner.script = () => ({ exitCode: 255, stderr: 'Control socket connect(/state/cm/abc0): No such file or directory' });
    expect(await table.sshMaster('/state/cm/abc0')).toBeUndefined();
  });
});

describe('mount state from /proc', () => {
  it('calls a mount stale once the sshfs the plugin started for it is gone, whatever else runs', async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    await mkdir(join(proc, 'self'));
    await writeFile(join(proc, 'self', 'mountinfo'), '99 22 0:50 / /mnt/volumes/v rw - fuse.sshfs u@h:/p rw\n');
    await mkdir(join(proc, '40'));
    await writeFile(join(proc, '40', 'stat'), '40 (sshfs) S 1 40 40 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0');
    const table = createHostView(new FakeRunner(), proc).mounts;
    const server = { pid: 40, startTicks: 777 };
    expect(await table.state('/mnt/volumes/v', server)).toBe('mounted');
    expect(await table.state('/mnt/volumes/v')).toBe('mounted'); // mounted by an older version: no sshfs on record
    expect(await table.state('/mnt/volumes/other', server)).toBe('absent');
    expect(await table.look('/mnt/volumes/v', server)).toEqual({ state: 'mounted', device: '0:50' });
    expect(await table.look('/mnt/volumes/other', server)).toEqual({ state: 'absent' });
    // A process named sshfs with our mountpoint in its arguments (a container's) changes nothing.
    await mkdir(join(proc, '41'));
    await writeFile(join(proc, '41', 'stat'), '41 (sshfs) S 1 41 41 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0');
    await writeFile(join(proc, '41', 'cmdline'), 'sshfs\0u@h:/p\0/mnt/volumes/v\0');
    await rm(join(proc, '40'), { recursive: true });
    expect(await table.state('/mnt/volumes/v', server)).toBe('stale');
    expect(await table.look('/mnt/volumes/v', server)).toEqual({ state: 'stale', device: '0:50' });
  });

  it('aborts a FUSE connection through fusectl when it is there, and says so when not', async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    const sys = await mkdtemp(join(tmpdir(), 'sys-'));
    await mkdir(join(proc, 'self'));
    await writeFile(join(proc, 'self', 'mountinfo'), '99 22 0:50 / /mnt/volumes/v rw - fuse.sshfs u@h:/p rw\n');
    const table = createHostView(new FakeRunner(), proc, sys).mounts;
    expect(await table.abort('/mnt/volumes/v')).toBe(false);
    await mkdir(join(sys, 'fs', 'fuse', 'connections', '50'), { recursive: true });
    await writeFile(join(sys, 'fs', 'fuse', 'connections', '50', 'abort'), '');
    expect(await table.abort('/mnt/volumes/v')).toBe(true);
    expect(await readFile(join(sys, 'fs', 'fuse', 'connections', '50', 'abort'), 'utf8')).toBe('1');
    expect(await table.abort('/mnt/volumes/other')).toBe(false);
    expect(fuseConnectionDir('0:50')).toBe('/sys/fs/fuse/connections/50');
    expect(fuseConnectionDir('8:1')).toBeUndefined();
  });

  it('never reads a command line, environment or memory map anywhere in the plugin (those reads can block on a stalled mount)', async () => {
    const files = (await Promise.all(['adapter', 'handlers', 'handlers/endpoints', 'state'].map(async (dir) =>
      (await readdir(dir)).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f))))).flat();
    expect(files.length).toBeGreaterThan(30);
    const sources = await Promise.all(files.map((f) => readFile(f, 'utf8')));
    const code = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    for (const text of sources) expect(code(text)).not.toMatch(/cmdline|environ|\/maps\b|\/mem\b/);
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
  it('reports a program it cannot start as exit code -1 with the reason, and drops one final newline of the output', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const r = await createExecaRunner().run('fusermount3', ['-V']);
      expect(r).toMatchObject({ exitCode: -1, timedOut: false });
      expect(r.stderr).toMatch(/ENOENT/);
    } finally {
      process.env.PATH = path;
    }
    const v = await createExecaRunner().run('fusermount3', ['-V']);
    expect(v.exitCode).toBe(0);
    expect(`${v.stdout}${v.stderr}`).toMatch(/fusermount3 version: [0-9.]+$/);
  });
  it('ends a run when its program ends, even while a child of it keeps the output pipes open', async () => {
    // ssh's ProxyCommand (run by ssh's shell) ignores the hangup ssh sends it when it exits: it holds ssh's stderr.
    const started = Date.now();
    const r = await createExecaRunner().run('ssh', [
      '-F', 'none', '-o', 'BatchMode=yes', '-o', `ProxyCommand=sh -c 'trap "" HUP TERM; exec sleep 10'`, 'x@127.0.0.1', 'true',
    ], { timeoutMs: 500 });
    expect(r.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(8_000); // the ProxyCommand still sleeps: the run did not wait for it
  }, 30_000);
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

  it('gives a file a new version when it is appended to or replaced, even by content of the same size', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-fs-'));
    const fs = createHostFs();
    const log = join(dir, 'v.ssh.log');
    expect(await fs.fileVersion(log)).toBeUndefined();
    await writeFile(log, 'one\n');
    const first = await fs.fileVersion(log);
    expect(first).toMatchObject({ size: 4 });
    expect(await fs.fileVersion(log)).toEqual(first); // nothing changed: the same version
    await appendFile(log, 'two\n');
    const appended = await fs.fileVersion(log);
    expect(appended).toMatchObject({ size: 8 });
    expect(appended?.version).not.toBe(first?.version);
    await fs.writeSecretFile(log, 'six\nten\n', { durable: false }); // a new file renamed over it, same size
    const replaced = await fs.fileVersion(log);
    expect(replaced).toMatchObject({ size: 8 });
    expect(replaced?.version).not.toBe(appended?.version);
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

describe('openDeps: the dependencies, complete when opened', () => {
  const log = { debug: () => undefined, info: () => undefined, error: () => undefined };
  it.each([false, true])('opens them complete and frozen, and leaves the configuration it was given as it was (dry run: %s)', async (dryRun) => {
    const dir = await mkdtemp(join(tmpdir(), 'open-deps-'));
    const config = { ...readConfig({ STATE_DIR: join(dir, 'state'), KEYS_DIR: join(dir, 'keys'), MOUNT_ROOT: join(dir, 'mnt') }), dryRun };
    const given = structuredClone(config);
    const deps = await openDeps(config, log);
    expect(config).toEqual(given);
    expect(Object.isFrozen(deps)).toBe(true);
    expect(Object.isFrozen(deps.config)).toBe(true);
    expect(typeof deps.mounts.usersOf).toBe('function');
    // Where the state directory is on the host: known at once (a tmp directory is no bind mount of its own).
    if (!dryRun) expect(deps.config.hostDirs).toEqual({});
    await rm(dir, { recursive: true });
  });
});

describe('MemoryFs over the host (a dry run)', () => {
  it('reads what it did not write from the host, keeps its writes and removals in memory, and changes nothing below', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'memory-fs-'));
    await writeFile(join(dir, 'key'), 'host key\n', { mode: 0o600 });
    const fs = new MemoryFs(createHostFs());
    expect(await fs.readText(join(dir, 'key'))).toBe('host key\n');
    expect(await fs.fileInfo(join(dir, 'key'))).toMatchObject({ isFile: true, size: 9 });
    await fs.writeSecretFile(join(dir, 'new'), 'in memory');
    expect(await fs.readText(join(dir, 'new'))).toBe('in memory');
    await fs.removeFile(join(dir, 'key'));
    expect(await fs.exists(join(dir, 'key'))).toBe(false);
    expect(await fs.readText(join(dir, 'key'))).toBe('');
    expect(await fs.fileInfo(join(dir, 'key'))).toBeUndefined();
    expect((await readdir(dir)).sort()).toEqual(['key']);
    expect(await readFile(join(dir, 'key'), 'utf8')).toBe('host key\n');
    await rm(dir, { recursive: true });
  });
});
