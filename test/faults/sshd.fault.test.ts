// The ssh connection dropped (per-connection sshd processes killed), the server went silent (frozen), or sshd restarted
// while a container writes to the volume: writes must resume without anyone doing anything (sshfs -o reconnect), and Status must say what happened.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import {
  descendantsOf,
  docker,
  dropSshdConnections,
  inspectVolume,
  isSshfsMounted,
  listProcesses,
  makeRemoteSubdir,
  mountCountAt,
  sleep,
  sshdPid,
  sshProcessesMentioning,
  startSshd,
  stopSshd,
  waitFor,
} from '../e2e/harness.js';
import { createVolume, keyOpts, measured, removeContainers, secondsSince, startContainer, stats, uniq, useFaultPlugin } from './lib.js';

// Whatever happened, leave sshd running for the next files.
const { plugin, res, env } = useFaultPlugin({ beforeCleanup: () => startSshd().catch(() => undefined) });

/** A container appending a numbered line to /data/io.log every 0.2 s, reporting each failed write on stderr. */
const WRITER = 'i=0; while true; do i=$((i+1)); echo $i >> /data/io.log 2>/dev/null || echo "write $i failed" >&2; sleep 0.2; done';

function linesWritten(remote: string): number {
  try {
    return readFileSync(path.join(remote, 'io.log'), 'utf8').split('\n').filter((l) => l !== '').length;
  } catch {
    return 0;
  }
}

/** Seconds from now until the server sees new lines again. */
async function waitResumed(remote: string, fault: () => Promise<void>): Promise<number> {
  await fault();
  const t0 = performance.now();
  const base = linesWritten(remote);
  await waitFor('writes to reach the server again', () => linesWritten(remote) >= base + 2, 60_000, 50);
  return secondsSince(t0);
}

it('resumes I/O by itself after ssh connections drop and after an sshd restart, and Status tells', async () => {
  await measured('sshd connection dropped / sshd restarted during I/O', import.meta.url, async (row) => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    const vol = await createVolume(res, plugin, uniq('blink'), keyOpts(remote));
    const mountpoint = path.join(plugin.mountRoot, vol);
    const writer = await startContainer(res, vol, WRITER);
    await waitFor('the writer to start', () => linesWritten(remote) >= 3, 30_000, 50);

    const dropRecovery: number[] = [];
    const messages = new Set<string>();
    const reported: string[] = [];
    /** Status must say the link was re-established after the fault (reconnectedAt from the new ssh's start time). */
    const checkReconnected = (status: Record<string, unknown>, faultAt: number) => {
      const at = typeof status.reconnectedAt === 'string' ? Date.parse(status.reconnectedAt) : NaN;
      reported.push(`${String(status.connection)}${Number.isFinite(at) ? ` ${((at - faultAt) / 1000).toFixed(2)} s after the fault` : ''}`);
      expect(status.connection, JSON.stringify(status)).toBe('reconnected');
      expect(at).toBeGreaterThanOrEqual(faultAt - 1_000); // /proc start times have 10 ms ticks; allow clock slack
    };
    expect((await inspectVolume(vol)).Status?.connection).toBe('up');
    for (let trial = 0; trial < 3; trial++) {
      row.trials += 1;
      let killed = 0;
      const faultAt = Date.now();
      dropRecovery.push(
        await waitResumed(remote, async () => {
          killed = await dropSshdConnections();
        }),
      );
      expect(killed).toBeGreaterThan(0);
      const status = (await inspectVolume(vol)).Status ?? {};
      if (typeof status.lastSshMessage === 'string') messages.add(status.lastSshMessage);
      expect(status.mounted).toBe(true);
      checkReconnected(status, faultAt);
      row.passed += 1;
    }

    row.trials += 1;
    const stopAt = Date.now();
    const restartRecovery = await waitResumed(remote, async () => {
      await stopSshd();
      await sleep(1_500); // the server is away for 3 s: writes in that window fail, the next ones must not
      const during = (await inspectVolume(vol)).Status ?? {};
      row.figures['Status while sshd is down'] = `connection: ${String(during.connection)}; lastSshMessage: ${String(during.lastSshMessage)}`;
      await sleep(1_500);
      await startSshd();
    });
    const afterRestart = (await inspectVolume(vol)).Status ?? {};
    if (typeof afterRestart.lastSshMessage === 'string') messages.add(afterRestart.lastSshMessage);
    expect(afterRestart.mounted).toBe(true);
    checkReconnected(afterRestart, stopAt);
    row.passed += 1;

    const failed = (await docker(['logs', writer])).stderr.split('\n').filter((l) => l.includes('failed')).length;
    // sshfs names the mountpoint and the volume's ssh log; its ssh names only the log.
    const live = await sshProcessesMentioning(path.join(plugin.stateDir, 'logs', `${vol}.ssh.log`));
    row.figures['connection drop -> writes resume (s)'] = stats(dropRecovery);
    row.figures['sshd stopped 3 s -> writes resume (s after start)'] = restartRecovery;
    row.figures['writes that failed (of all)'] = `${failed} of ${linesWritten(remote) + failed}`;
    row.figures['Status.connection after each fault'] = reported.join(' | ');
    row.figures['Status.lastSshMessage after drops'] = messages.size > 0 ? [...messages].map((m) => JSON.stringify(m)).join(' | ') : 'none';
    if (messages.size === 0) {
      // Measured: ssh (LogLevel INFO, the default) writes nothing to its -E log when the server closes the link, and
      // sshfs says nothing of a reconnect. See the report: counting reconnects needs ssh's VERBOSE "Authenticated to".
      row.notes.push('ssh logs nothing (LogLevel INFO) when the server end dies and sshfs reconnects silently: Status tells from the ssh start time');
    }
    row.figures['sshfs + ssh processes after 4 reconnects'] = `${live.filter((p) => p.comm === 'sshfs').length} + ${live.filter((p) => p.comm === 'ssh').length}`;
    expect(live.filter((p) => p.comm === 'sshfs')).toHaveLength(1);
    expect(live.filter((p) => p.comm === 'ssh')).toHaveLength(1);
    expect(await mountCountAt(mountpoint)).toBe(1);

    await removeContainers(res, [writer]);
    await waitFor('the volume to be unmounted', async () => !(await isSshfsMounted(mountpoint)), 20_000);
  });
});

it('notices a server that goes silent mid-session by its keepalives, reconnects, and I/O resumes', async () => {
  await measured('server silent mid-session (its sshd frozen), keepalive 1 s × 2', import.meta.url, async (row) => {
    const remote = await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
    // The defaults (ServerAliveInterval × ServerAliveCountMax in handlers/options.ts) take longer to notice a dead link;
    // shorter ones show the same mechanism in a few seconds.
    const vol = await createVolume(res, plugin, uniq('silent'), { ...keyOpts(remote), ServerAliveInterval: '1', ServerAliveCountMax: '2' });
    const mountpoint = path.join(plugin.mountRoot, vol);
    const writer = await startContainer(res, vol, WRITER);
    await waitFor('the writer to start', () => linesWritten(remote) >= 3, 30_000, 50);
    row.trials += 1;
    // SIGSTOP every per-connection sshd process: the TCP connection stays open, but nothing answers any more
    // (a partitioned network or a hung server look the same to the client).
    const frozen = descendantsOf(await listProcesses(), sshdPid()).filter((p) => p.state !== 'Z');
    expect(frozen.length).toBeGreaterThan(0);
    const faultAt = Date.now();
    let recovered: number;
    try {
      recovered = await waitResumed(remote, async () => {
        for (const p of frozen) process.kill(p.pid, 'SIGSTOP');
      });
    } finally {
      for (const p of frozen) {
        try {
          process.kill(p.pid, 'SIGKILL'); // a stopped process still dies of SIGKILL
        } catch {
          // gone already
        }
      }
    }
    const status = (await inspectVolume(vol)).Status ?? {};
    row.figures['server frozen -> writes resume (s)'] = recovered;
    row.figures['Status after'] = `connection: ${String(status.connection)}; lastSshMessage: ${JSON.stringify(status.lastSshMessage)}`;
    expect(status.mounted).toBe(true);
    expect(status.connection, JSON.stringify(status)).toBe('reconnected');
    expect(Date.parse(String(status.reconnectedAt))).toBeGreaterThanOrEqual(faultAt - 1_000);
    // ssh's own words when its keepalives go unanswered: the reason reaches docker volume inspect.
    expect(String(status.lastSshMessage)).toMatch(/not responding/);
    const live = await sshProcessesMentioning(path.join(plugin.stateDir, 'logs', `${vol}.ssh.log`));
    expect(live.filter((p) => p.comm === 'ssh')).toHaveLength(1);
    row.passed += 1;
    await removeContainers(res, [writer]);
    await waitFor('the volume to be unmounted', async () => !(await isSshfsMounted(mountpoint)), 20_000);
  });
});
