// A server that stalls never hangs Docker, and a volume in use is never cut from under its container (issue 18), and
// no other process can steer the plugin's view of its mounts (issue 19). Every docker command runs with a bound (the
// harness kills the CLI after timeoutMs), and no process may be left waiting in the kernel (D state) on a mount.
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, expect, it } from 'vitest';
import { docker, listProcesses, listVolumes, loadEnv, makeRemoteSubdir, sleep, sshProcessesMentioning, waitFor } from '../e2e/harness.js';
import { abortSshfsOf, startTestSshd, type TestSshd } from './hostile-servers.js';
import { call, createVolume, type FaultRow, keyOpts, measured, removeContainers, secondsSince, startContainer, statusOver, uniq, useFaultPlugin } from './lib.js';

const env = loadEnv();
const MOUNT_TIMEOUT_S = 4;
/** sshfs's INIT and its check of the remote dir pass, so sshfs mounts; the first request on the mount never returns. */
const STALL_AFTER_PACKETS = 2;
/** Bound for every docker command here: far beyond what each needs, far below "hangs for good". */
const DOCKER_BOUND_MS = 60_000;
const keyText = readFileSync(env.keyFile, 'utf8');

let sshd: TestSshd;
/** fusectl, which the stall watch reads, mounted by this file (hosts with systemd have it; this test machine may not). */
let mountedFusectl = false;
const FUSECTL = '/sys/fs/fuse/connections';

const { plugin, res } = useFaultPlugin({
  env: { MOUNT_TIMEOUT: String(MOUNT_TIMEOUT_S) },
  beforeCleanup: async () => {
    sshd?.stallAfter(undefined);
    await abortSshfsOf(plugin.mountRoot, plugin.stateDir);
  },
  afterCleanup: () => abortSshfsOf(plugin.mountRoot, plugin.stateDir),
  afterStop: async () => {
    await sshd?.stop();
    if (mountedFusectl) await execa('umount', [FUSECTL], { reject: false });
  },
});

beforeAll(async () => {
  sshd = await startTestSshd();
  if (!(await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${FUSECTL} `)) {
    await execa('mount', ['-t', 'fusectl', 'fusectl', FUSECTL]);
    mountedFusectl = true;
  }
});

/** A volume on the test sshd (whose SFTP can be made to stall), on a fresh remote dir. */
async function stallableVolume(prefix: string, extra: Record<string, string> = {}): Promise<{ remote: string; vol: string }> {
  const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
  const opts = { sshcmd: `${env.keyUser}@127.0.0.1:${remote}`, port: String(sshd.port), key: keyText, ...extra };
  return { remote, vol: await createVolume(res, plugin, uniq(prefix), opts) };
}

/**
 * Processes waiting in the kernel (D state) with the remote dir's mount in their mount namespace: a container's
 * process or runc on the volume. Only /proc/<pid>/stat and mountinfo are read (neither blocks on such a process).
 */
async function stuckOn(remote: string): Promise<string[]> {
  const stuck: string[] = [];
  for (const p of (await listProcesses()).filter((q) => q.state === 'D')) {
    const mounts = await readFile(`/proc/${p.pid}/mountinfo`, 'utf8').catch(() => '');
    if (mounts.includes(`:${remote} `)) stuck.push(`${p.pid} ${p.comm}`);
  }
  return stuck;
}

/** stuckOn, once the processes a released mount freed have had up to 10 s to leave the kernel. */
async function stuckAfterRelease(remote: string): Promise<string[]> {
  await waitFor('no process left waiting on the mount', async () => (await stuckOn(remote)).length === 0, 10_000).catch(() => undefined);
  return stuckOn(remote);
}

/** Stalls the server, then reads through the holder's mount a file no cache holds: how the read ended, and when. */
async function readAfterStall(holder: string, row: FaultRow): Promise<{ read: Awaited<ReturnType<typeof docker>>; seconds: number }> {
  sshd.stallNow();
  await sleep(300); // stall-sftp.mjs looks for stall-now every 100 ms
  const t0 = performance.now();
  const read = await docker(['exec', holder, 'cat', '/data/new'], { timeoutMs: DOCKER_BOUND_MS });
  const seconds = secondsSince(t0);
  row.figures['reader blocked, then got (s)'] = `${seconds}: exit ${read.exitCode} ${read.stderr.trim().slice(0, 80)}`;
  return { read, seconds };
}

/**
 * After the stall watch's abort: the holder removed with `docker rm -f` (then `released`, for what else the test holds
 * on the mount), no process left waiting on the mount, and the volume removable.
 */
async function removeAfterAbort(holder: string, remote: string, vol: string, row: FaultRow, released = async () => undefined): Promise<void> {
  const t1 = performance.now();
  const rmf = await docker(['rm', '-f', holder], { timeoutMs: DOCKER_BOUND_MS });
  row.figures['docker rm -f (s)'] = secondsSince(t1);
  expect(rmf.exitCode, rmf.stderr).toBe(0);
  res.containers.delete(holder);
  await released();
  expect(await stuckAfterRelease(remote)).toEqual([]);
  const rm = await docker(['volume', 'rm', vol], { timeoutMs: DOCKER_BOUND_MS });
  expect(rm.exitCode, rm.stderr).toBe(0);
  res.volumes.delete(vol);
}

const sshfsOf = async (vol: string) => (await sshProcessesMentioning(path.join(plugin.stateDir, 'logs', `${vol}.ssh.log`))).length;

it('fails docker run on a server whose SFTP stalls at the Mount within the mount timeout, with the reason, and leaves nothing waiting', async () => {
  await measured('SFTP stalls at Mount: docker run fails in bounded time', import.meta.url, async (row) => {
    row.trials += 1;
    const { remote, vol } = await stallableVolume('stallmount');
    sshd.stallAfter(STALL_AFTER_PACKETS);
    const t0 = performance.now();
    const r = await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, env.image, 'ls', '/data'], { timeoutMs: DOCKER_BOUND_MS });
    const seconds = secondsSince(t0);
    row.figures['docker run -> failed after (s)'] = seconds;
    row.figures['error'] = r.stderr.replace(/\s+/g, ' ').slice(0, 200);
    expect(sshd.stalledSessions()).toBeGreaterThan(0); // the server really stalled
    expect(r.exitCode, r.stderr).not.toBe(-1); // the CLI returned by itself
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/the server accepted the login but its SFTP server does not answer/);
    expect(seconds).toBeLessThan(MOUNT_TIMEOUT_S + 20);
    const stuck = await stuckAfterRelease(remote);
    row.figures['processes in D state on the mount'] = stuck.length;
    expect(stuck).toEqual([]);
    await waitFor('its sshfs and ssh to end', async () => (await sshfsOf(vol)) === 0, 10_000).catch(() => undefined);
    expect(await sshfsOf(vol)).toBe(0);
    const status = await statusOver(plugin, vol);
    expect(String(status.lastError)).toMatch(/SFTP server does not answer/);
    // The volume is not held by anything: it can be removed, in bounded time.
    const rm = await docker(['volume', 'rm', vol], { timeoutMs: DOCKER_BOUND_MS });
    expect(rm.exitCode, rm.stderr).toBe(0);
    res.volumes.delete(vol);
    // Once the server answers again, a volume on it mounts as usual.
    sshd.stallAfter(undefined);
    const again = await stallableVolume('stallmount-after');
    const ok = await docker(['run', '--rm', '--network', 'none', '-v', `${again.vol}:/data`, env.image, 'ls', '/data'], { timeoutMs: DOCKER_BOUND_MS });
    expect(ok.exitCode, ok.stderr).toBe(0);
    row.passed += 1;
  });
}, 180_000);

it('refuses a Remove sent on the socket while a Docker container uses the volume; the container keeps reading and writing', async () => {
  await measured('Remove from another client while a container uses the volume: refused', import.meta.url, async (row) => {
    row.trials += 1;
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('inuse'), keyOpts(remote));
    const holder = await startContainer(res, vol, 'i=0; while true; do i=$((i+1)); echo $i >> /data/log; tail -n 1 /data/log > /dev/null || exit 1; sleep 0.2; done');
    await waitFor('the container to write', async () => (await readFile(path.join(remote, 'log'), 'utf8').catch(() => '')) !== '', 30_000);
    // What Podman or another dockerd sharing the socket would send: it does not know Docker's containers.
    const r = await call(plugin, '/VolumeDriver.Remove', { Name: vol }, 30_000);
    row.figures['Remove answer'] = r.Err.slice(0, 160);
    expect(r.Err).toMatch(/is in use: [1-9][0-9]* mount\(s\) of it are held elsewhere.*Nothing was changed/);
    await sleep(3_000);
    // A file of its own: the container's loop appends to /data/log between a write there and its read-back.
    const probe = await docker(['exec', holder, 'sh', '-c', 'echo extra > /data/probe && cat /data/probe'], { timeoutMs: DOCKER_BOUND_MS });
    expect(probe.exitCode, probe.stderr).toBe(0);
    expect(probe.stdout.trim()).toBe('extra');
    expect((await docker(['inspect', '-f', '{{.State.Running}}', holder], { timeoutMs: DOCKER_BOUND_MS })).stdout.trim()).toBe('true');
    expect(await listVolumes(plugin.name)).toContain(vol);
    expect((await statusOver(plugin, vol)).mounted).toBe(true);
    // Once the container is gone, docker volume rm removes it.
    await removeContainers(res, [holder]);
    const rm = await docker(['volume', 'rm', vol], { timeoutMs: DOCKER_BOUND_MS });
    expect(rm.exitCode, rm.stderr).toBe(0);
    res.volumes.delete(vol);
    row.passed += 1;
  });
}, 180_000);

it('is not fooled by a process named sshfs naming the mountpoint: a crashed mount is still replaced', async () => {
  await measured('a fake sshfs process does not hide a crashed mount', import.meta.url, async (row) => {
    row.trials += 1;
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('spoof'), keyOpts(remote));
    const mountpoint = path.join(plugin.mountRoot, vol);
    const holder = await startContainer(res, vol);
    // A root process (as a container's root would be) whose argv looks like sshfs serving the mountpoint.
    const spoof = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', mountpoint], { argv0: 'sshfs', stdio: 'ignore' });
    try {
      await sleep(300);
      expect(readFileSync(`/proc/${spoof.pid}/cmdline`, 'utf8').split('\0')[0]).toBe('sshfs');
      // The volume's real sshfs crashes.
      for (const p of await sshProcessesMentioning(path.join(plugin.stateDir, 'logs', `${vol}.ssh.log`))) {
        if (p.comm === 'sshfs') process.kill(p.pid, 'SIGKILL');
      }
      await waitFor('the plugin to see the mount as stale', async () => (await statusOver(plugin, vol)).stale !== undefined, 15_000);
      const r = await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, env.image, 'sh', '-c', 'echo ok > /data/f && cat /data/f'], { timeoutMs: DOCKER_BOUND_MS });
      row.figures['docker run after the crash'] = r.exitCode === 0 ? r.stdout.trim() : r.stderr.slice(0, 120);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('ok');
    } finally {
      spoof.kill('SIGKILL');
      await removeContainers(res, [holder]);
    }
    row.passed += 1;
  });
}, 180_000);

const STALL_TIMEOUT_S = 3;

it('aborts a mount whose server stalls while a container uses it after stall_timeout: the reader gets an error, docker rm -f works, the volume is removable', async () => {
  await measured('SFTP stalls after Mount: stall_timeout aborts, Docker is freed', import.meta.url, async (row) => {
    row.trials += 1;
    sshd.stallAfter(undefined);
    const { remote, vol } = await stallableVolume('stalllater', { stall_timeout: String(STALL_TIMEOUT_S) });
    // Written before the mount, so sshfs's directory cache knows it; its content is in no cache: reading it (open,
    // read) must ask the server.
    writeFileSync(path.join(remote, 'new'), 'never read');
    const holder = await startContainer(res, vol);
    try {
      const { read, seconds } = await readAfterStall(holder, row);
      expect(read.exitCode, 'the read hung until the harness killed the CLI').not.toBe(-1);
      expect(read.exitCode).not.toBe(0);
      expect(seconds).toBeGreaterThanOrEqual(STALL_TIMEOUT_S - 1);
      expect(seconds).toBeLessThan(STALL_TIMEOUT_S + 20);
      const status = await statusOver(plugin, vol);
      row.figures['Status.connection'] = String(status.connection).slice(0, 80);
      expect(String(status.connection)).toMatch(/^stalled: requests waited 3 s/);
      expect(status.stalledAt).toBeDefined();
      await removeAfterAbort(holder, remote, vol, row);
      row.passed += 1;
    } finally {
      sshd.unstall();
    }
  });
}, 180_000);

/**
 * Something touching the mount every ~1 s, as a container's health check or a monitoring loop would: a new `stat` of
 * the mountpoint each time (a new process, as each health check is; one stuck on the stalled server waits in the kernel
 * until the abort, and may not keep the next one from starting). Each such request is read by sshfs from /dev/fuse,
 * which moved sshfs's read byte count without the server saying a thing. At most `limit` processes; stop() ends the loop.
 */
function touchEverySecond(mountpoint: string, limit = 90): { started: () => number; stop: () => Promise<number> } {
  const children: ReturnType<typeof spawn>[] = [];
  const tick = setInterval(() => {
    if (children.length >= limit) return;
    children.push(spawn('stat', ['-c', '%i', mountpoint], { stdio: 'ignore' }));
  }, 1_000);
  const running = () => children.filter((c) => c.exitCode === null && c.signalCode === null).length;
  return {
    started: () => children.length,
    /** Stops the loop; resolves to how many of its processes still run 20 s later (0 once the mount was aborted). */
    async stop() {
      clearInterval(tick);
      await waitFor('the touching processes to end', async () => running() === 0, 20_000).catch(() => undefined);
      return running();
    },
  };
}

it('aborts a stalled mount after stall_timeout even while something touches it every second (new requests are not answers)', async () => {
  await measured('SFTP stalls, the mount touched every 1 s: still aborted', import.meta.url, async (row) => {
    row.trials += 1;
    sshd.stallAfter(undefined);
    const { remote, vol } = await stallableVolume('stalltouched', { stall_timeout: String(STALL_TIMEOUT_S) });
    writeFileSync(path.join(remote, 'new'), 'never read');
    const holder = await startContainer(res, vol);
    // The root's listing in sshfs's directory cache: the watch's probe of a name not in it must still reach the server.
    const ls = await docker(['exec', holder, 'ls', '-a', '/data'], { timeoutMs: DOCKER_BOUND_MS });
    expect(ls.stdout.split('\n')).toContain('new');
    const touch = touchEverySecond(path.join(plugin.mountRoot, vol));
    try {
      const { read, seconds } = await readAfterStall(holder, row);
      row.figures['stat processes started meanwhile'] = touch.started();
      // A CLI the harness had to kill may still exit 0: its note in stderr tells.
      expect(read.stderr, 'the read hung until the harness killed the CLI: the touches kept the mount from being aborted').not.toMatch(/\[harness\].*timed out/);
      expect(read.exitCode).not.toBe(-1);
      expect(read.exitCode).not.toBe(0);
      expect(seconds).toBeLessThan(STALL_TIMEOUT_S + 30);
      expect(touch.started()).toBeGreaterThanOrEqual(STALL_TIMEOUT_S); // it was really touched during the wait
      const status = await statusOver(plugin, vol);
      row.figures['Status.connection'] = String(status.connection).slice(0, 80);
      expect(String(status.connection)).toMatch(/^stalled: requests waited 3 s/);
      await removeAfterAbort(holder, remote, vol, row, async () => {
        expect(await touch.stop(), 'stat processes still waiting on the mount').toBe(0);
      });
      row.passed += 1;
    } finally {
      await touch.stop();
      sshd.unstall();
    }
  });
}, 240_000);

it('never aborts a slow transfer that still moves, however long it takes past stall_timeout', async () => {
  await measured('slow but alive server: never aborted', import.meta.url, async (row) => {
    row.trials += 1;
    sshd.stallAfter(undefined);
    sshd.slow(128 * 1024); // 128 KiB/s: a 1.5 MiB file takes about 12 s, four times stall_timeout
    try {
      const { remote, vol } = await stallableVolume('slow', { stall_timeout: String(STALL_TIMEOUT_S) });
      writeFileSync(path.join(remote, 'big'), Buffer.alloc(1536 * 1024, 7));
      const t0 = performance.now();
      const r = await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, env.image, 'sh', '-c', 'wc -c < /data/big'], { timeoutMs: 120_000 });
      const seconds = secondsSince(t0);
      row.figures['1.5 MiB at 128 KiB/s (s)'] = seconds;
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(String(1536 * 1024));
      expect(seconds).toBeGreaterThan(STALL_TIMEOUT_S * 2); // really slower than stall_timeout
      expect(plugin.logs()).not.toMatch(new RegExp(`volume ${vol}: .*no answer from the server`));
      row.passed += 1;
    } finally {
      sshd.slow(undefined);
    }
  });
}, 180_000);

const MMAP_LOCK_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'mmap-lock.py');

/**
 * Whether the trap holds: one of its threads waits in the kernel for the server (holding the memory lock) and another
 * waits for that lock. Read from the threads' /proc/<pid>/task/<tid>/stat and wchan, which take no such lock: reading
 * its cmdline to check would block this test for good (that wait is not even killable).
 */
async function trapSet(pid: number): Promise<boolean> {
  let waiting = 0;
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('D')) waiting += 1;
  }
  return waiting >= 2;
}

/** Aborts the FUSE connection of the mount at MOUNTPOINT through fusectl: whatever waits on it gets an error. */
async function abortConnection(mountpoint: string): Promise<void> {
  const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mountpoint);
  const minor = /^0:([0-9]+)$/.exec(line?.split(' ')[2] ?? '')?.[1];
  if (minor !== undefined) await writeFile(`${FUSECTL}/${minor}/abort`, '1').catch(() => undefined);
}

it('answers Get, List, Mount and docker volume inspect while a process on a stalled mount blocks reads of its command line', async () => {
  await measured('a process blocking its cmdline read does not freeze the plugin', import.meta.url, async (row) => {
    row.trials += 1;
    sshd.stallAfter(undefined);
    // stall_timeout=0: the trap must hold for the whole test (the stall watch would otherwise end it).
    const { remote, vol } = await stallableVolume('trap', { stall_timeout: '0' });
    writeFileSync(path.join(remote, 'bait'), Buffer.alloc(8192, 1));
    expect((await call(plugin, '/VolumeDriver.Mount', { Name: vol, ID: 'trap' }, 30_000)).Err).toBe('');
    const trap = spawn('/usr/bin/python3', [MMAP_LOCK_SCRIPT, path.join(plugin.mountRoot, vol, 'bait')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    let reader: ReturnType<typeof spawn> | undefined;
    trap.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    try {
      await waitFor('the trap to map its file', () => out.includes('mapped'), 20_000, 50);
      sshd.stallNow();
      await sleep(500);
      trap.stdin.write('go\n');
      await waitFor('the trap to be set', () => out.includes('ready'), 20_000, 50);
      await waitFor('a trap thread to wait for the memory lock', () => trapSet(trap.pid ?? 0), 20_000, 100).catch(() => undefined);
      const armed = await trapSet(trap.pid ?? 0);
      // A reader of its cmdline (as ps, or a plugin scanning command lines): it must still wait a second later. Not
      // awaited (it cannot be killed while it waits); it ends once the trap is released below.
      reader = spawn('cat', [`/proc/${trap.pid ?? 0}/cmdline`], { stdio: 'ignore' });
      await sleep(1_000);
      const blocks = reader.exitCode === null && reader.signalCode === null;
      row.figures['trap set / a cmdline read of it still waits after 1 s'] = `${String(armed)} / ${String(blocks)}`;
      expect(armed && blocks, 'the trap did not block cmdline reads: the test would prove nothing').toBe(true);
      // A healthy volume mounted now: its Get looks up its processes (a plugin scanning command lines reads the trap's).
      const healthyRemote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
      const healthy = await createVolume(res, plugin, uniq('healthy'), keyOpts(healthyRemote));
      const answers: Record<string, number> = {};
      const timed = async (label: string, endpoint: string, body: unknown) => {
        const t0 = performance.now();
        const r = await call(plugin, endpoint, body, 10_000).catch((error: unknown) => ({ Err: `no answer: ${String(error)}` }));
        answers[label] = Math.round(performance.now() - t0);
        expect(r.Err, label).toBe('');
      };
      // The trapped volume's own Get looks up its ssh, started before the trap; a scan of /proc newest first meets the trap.
      await timed('Get (trapped volume)', '/VolumeDriver.Get', { Name: vol });
      await timed('Mount', '/VolumeDriver.Mount', { Name: healthy, ID: 'h' });
      await timed('Get', '/VolumeDriver.Get', { Name: healthy });
      await timed('List', '/VolumeDriver.List', {});
      await timed('Unmount', '/VolumeDriver.Unmount', { Name: healthy, ID: 'h' });
      const t0 = performance.now();
      const inspect = await docker(['volume', 'inspect', healthy], { timeoutMs: DOCKER_BOUND_MS });
      answers['docker volume inspect'] = Math.round(performance.now() - t0);
      row.figures['answer times (ms)'] = JSON.stringify(answers);
      expect(inspect.exitCode, inspect.stderr).toBe(0);
      for (const [label, ms] of Object.entries(answers)) expect(ms, label).toBeLessThan(label.startsWith('docker') ? 30_000 : 5_000);
    } finally {
      // Release the trap first (this file's own process scans read command lines): abort the stalled mount's FUSE
      // connection, so its threads get an error; then it can be killed, and the mount's sshfs ended.
      await abortConnection(path.join(plugin.mountRoot, vol));
      trap.kill('SIGKILL');
      await waitFor('the trap to end', () => trap.exitCode !== null || trap.signalCode !== null, 20_000).catch(() => undefined);
      const cat = reader;
      if (cat !== undefined) await waitFor('the cmdline reader to end', () => cat.exitCode !== null || cat.signalCode !== null, 20_000).catch(() => undefined);
      await abortSshfsOf(plugin.mountRoot, plugin.stateDir);
      sshd.unstall();
    }
    row.passed += 1;
  });
}, 180_000);
