// The processes the plugin started (sshfs, its ssh, the shared logins' masters), known by pid and start time. Nothing
// here reads another process's command line or environment: those reads take the process's memory lock, which a
// process on a stalled mount can hold for as long as its server stays silent (and would freeze the plugin's one
// thread); and a name or command line is anybody's to choose (a container's root can run a program called sshfs).
// Only /proc/<pid>/stat is read (and task/<tid> looked for), and for the stall watch sshfs's threads' stat, io and
// syscall and the targets of its fds: none of them takes that lock.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { CommandRunner, ProcessId, ProcessTable } from '../../handlers/types.js';

/** Linux's USER_HZ: the unit of /proc/<pid>/stat times, 100 on every architecture Docker runs on. */
const TICKS_PER_SECOND = 100;

export interface ProcStat {
  state: string;
  ppid: number;
  /** Its process group. */
  pgrp: number;
  /** Field 22: clock ticks after boot at which the process started. */
  startTicks: number;
}

/** Fields of /proc/<pid>/stat, counted after the "(comm)" field, which may itself hold spaces and parentheses. */
export function parseStat(stat: string): ProcStat | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  const ppid = Number(fields[1]);
  const pgrp = Number(fields[2]);
  const startTicks = Number(fields[19]);
  const state = fields[0] ?? '';
  return state !== '' && Number.isInteger(ppid) && Number.isInteger(pgrp) && Number.isInteger(startTicks) ? { state, ppid, pgrp, startTicks } : undefined;
}

/** Seconds after boot at which a process started: field 22 of /proc/<pid>/stat. */
export function startSecondsAfterBoot(stat: string): number | undefined {
  const parsed = parseStat(stat);
  return parsed === undefined ? undefined : parsed.startTicks / TICKS_PER_SECOND;
}

/**
 * The boot time in seconds since the epoch, from /proc/uptime (1/100 s) and the clock now: /proc/stat's btime is cut
 * to whole seconds, which would put every start up to a second early.
 */
export function bootTimeSeconds(procUptime: string, nowMs: number): number | undefined {
  const field = procUptime.trim().split(/\s+/)[0] ?? '';
  return /^[0-9]+(\.[0-9]+)?$/.test(field) ? nowMs / 1000 - Number(field) : undefined;
}

/** Processes whose stat is read per turn of the event loop while looking for a group's members. */
const SCAN_BATCH = 64;

/** The pids after sshfs's own where its ssh is looked for first. */
const NEAR_PIDS = 16;

/** How long sshfs and ssh may take to exit by themselves after their mount is gone. */
const RETIRE_GRACE_MS = 5_000;

/** read(2)'s number where sshfs's thread that reads ssh's answers waits (task/<tid>/syscall); none known: not looked for. */
const READ_SYSCALL: Partial<Record<string, number>> = { x64: 0, arm64: 63 };

/** `ssh -O check` answers "Master running (pid=N)". */
const MASTER_PID = /Master running \(pid=([0-9]+)\)/;

const idKey = (p: ProcessId) => `${p.pid}:${p.startTicks}`;

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function readLink(file: string): string | undefined {
  try {
    return readlinkSync(file);
  } catch {
    return undefined;
  }
}

/**
 * Reads are synchronous: a /proc/<pid>/stat of one known process is a small read that takes no lock a stalled mount
 * can hold, and a thread-pool round trip costs more than the read.
 */
export function createProcessTable(runner: CommandRunner, procDir = '/proc'): ProcessTable {
  const stat = (pid: number): ProcStat | undefined => {
    // Most pids the near-pid look tries are free: a failed read costs an exception, ten times an existsSync.
    if (!existsSync(`${procDir}/${pid}/stat`)) return undefined;
    try {
      return parseStat(readFileSync(`${procDir}/${pid}/stat`, 'utf8'));
    } catch {
      return undefined; // no such process
    }
  };
  const isAlive = (p: ProcessId): boolean => {
    const s = stat(p.pid);
    return s !== undefined && s.startTicks === p.startTicks && s.state !== 'Z' && s.state !== 'X';
  };
  const identify = (pid: number): ProcessId | undefined => {
    const s = stat(pid);
    return s === undefined || s.state === 'Z' ? undefined : { pid, startTicks: s.startTicks };
  };
  const bootSeconds = (): number => {
    try {
      return bootTimeSeconds(readFileSync(`${procDir}/uptime`, 'utf8'), Date.now()) ?? 0;
    } catch {
      return 0;
    }
  };
  const killGroup = (leader: ProcessId): void => {
    // The group is ended when its leader is still the process we started, or is gone (then its ssh may linger in
    // the group; the kernel never gives a pid still naming a live group to a new process). A pid now used by
    // another process is left alone.
    const now = stat(leader.pid);
    if (now !== undefined && now.startTicks !== leader.startTicks) return;
    try {
      process.kill(-leader.pid, 'SIGKILL');
    } catch {
      // the group is empty already
    }
  };
  /** sshfs's threads that read its ssh's answers (tid -> start), found once each: they may be busy at a later look. */
  const answerThreads = new Map<string, { sshfs: ProcessId; threads: Map<number, number> }>();
  /** The ssh last found in each sshfs's group: a Get costs one stat read while it lives. */
  const members = new Map<string, ProcessId>();
  /** Masters seen through their control socket, kept so a Get costs no `ssh -O check` while the master lives. */
  const masters = new Map<string, ProcessId>();
  return {
    identify: async (pid) => identify(pid),
    alive: async (p) => isAlive(p),
    async groupMember(leader) {
      if (!isAlive(leader)) return undefined;
      const key = `${leader.pid}/${leader.startTicks}`;
      const known = members.get(key);
      if (known !== undefined && isAlive(known) && stat(known.pid)?.pgrp === leader.pid) return known;
      members.delete(key);
      // sshfs forks its ssh as soon as it starts (and again on a reconnect), so the ssh almost always has one of the
      // next few pids: look there first, a few stat reads, instead of scanning all of /proc on the first Get of every
      // fresh mount (dockerd sends one right before each Unmount). Only a process of the leader's group counts, not one
      // of sshfs's own threads: /proc/<tid>/stat answers for those too (same group, newer start), though /proc lists
      // only processes, as the scan below sees them. (sshfs forks twice to start ssh: its ssh is not its child.)
      /** The newest live process of the leader's group among PIDS (or BEST, if newer); sshfs's threads are not. */
      const newestMember = (pids: Iterable<number>, best?: ProcessId): ProcessId | undefined => {
        for (const pid of pids) {
          if (pid === leader.pid) continue;
          const s = stat(pid);
          if (s === undefined || s.pgrp !== leader.pid || s.state === 'Z' || existsSync(`${procDir}/${leader.pid}/task/${pid}`)) continue;
          if (best === undefined || s.startTicks > best.startTicks) best = { pid, startTicks: s.startTicks };
        }
        return best;
      };
      const near = newestMember(Array.from({ length: NEAR_PIDS }, (_, i) => leader.pid + 1 + i));
      if (near !== undefined) {
        members.set(key, near);
        return near;
      }
      // The group has no index in /proc: look at every process's stat (no lock a stalled mount can hold), a batch per
      // turn of the event loop so requests pass in between. Only after a reconnect or while the link is down.
      const pids = (await readdir(procDir)).filter((d) => /^[0-9]+$/.test(d)).map(Number);
      let found: ProcessId | undefined;
      for (let start = 0; start < pids.length; start += SCAN_BATCH) {
        if (start > 0) await new Promise((resolve) => setImmediate(resolve));
        found = newestMember(pids.slice(start, start + SCAN_BATCH), found);
      }
      if (found !== undefined) members.set(key, found);
      return found;
    },
    nowTicks: () => {
      try {
        return Math.floor(Number(readFileSync(`${procDir}/uptime`, 'utf8').trim().split(/\s+/)[0]) * TICKS_PER_SECOND);
      } catch {
        return 0;
      }
    },
    startedAt: (p) => new Date((bootSeconds() + p.startTicks / TICKS_PER_SECOND) * 1000),
    async sshMaster(controlPath) {
      const known = masters.get(controlPath);
      if (known !== undefined && isAlive(known)) {
        return { startedAt: new Date((bootSeconds() + known.startTicks / TICKS_PER_SECOND) * 1000) };
      }
      masters.delete(controlPath);
      // Ask the master itself, over its socket in the plugin's root-only state directory: it names its own pid.
      const check = await runner.run('ssh', ['-F', 'none', '-O', 'check', '-o', `ControlPath=${controlPath}`, 'shared-connection'], {
        timeoutMs: 5_000,
      });
      const pid = Number(MASTER_PID.exec(`${check.stderr}\n${check.stdout}`)?.[1]);
      const found = check.exitCode === 0 && Number.isInteger(pid) ? identify(pid) : undefined;
      if (found === undefined) return undefined;
      masters.set(controlPath, found);
      return { startedAt: new Date((bootSeconds() + found.startTicks / TICKS_PER_SECOND) * 1000) };
    },
    async answersRead(sshfs) {
      const readNr = READ_SYSCALL[process.arch];
      if (readNr === undefined || !isAlive(sshfs)) return undefined;
      for (const [key, p] of answerThreads) if (key !== idKey(sshfs) && !isAlive(p.sshfs)) answerThreads.delete(key);
      const known = answerThreads.get(idKey(sshfs))?.threads ?? new Map<number, number>();
      const task = `${procDir}/${sshfs.pid}/task`;
      const tids = await readdir(task).catch(() => [] as string[]);
      for (const tid of tids.map(Number).filter((t) => !known.has(t))) {
        // A thread waiting in read(2) on sshfs's socket or pipe to ssh (FUSE's workers read /dev/fuse): one that
        // reads the server's answers. Unreadable (a kernel or policy that hides it): not found, the probe decides alone.
        const call = readText(`${task}/${tid}/syscall`)?.trim().split(' ');
        if (call === undefined || Number(call[0]) !== readNr || call[1] === undefined) continue;
        const target = readLink(`${procDir}/${sshfs.pid}/fd/${Number.parseInt(call[1], 16)}`);
        const started = parseStat(readText(`${task}/${tid}/stat`) ?? '')?.startTicks;
        if (target !== undefined && /^(socket|pipe):/.test(target) && started !== undefined) known.set(tid, started);
      }
      let bytes = 0;
      for (const [tid, started] of known) {
        const rchar = /^rchar: ([0-9]+)$/m.exec(readText(`${task}/${tid}/io`) ?? '')?.[1];
        if (parseStat(readText(`${task}/${tid}/stat`) ?? '')?.startTicks !== started || rchar === undefined) known.delete(tid);
        else bytes += Number(rchar);
      }
      if (known.size === 0) return undefined;
      answerThreads.set(idKey(sshfs), { sshfs, threads: known });
      return bytes;
    },
    retire(sshfs) {
      setTimeout(() => killGroup(sshfs), RETIRE_GRACE_MS).unref();
    },
    endGroup: async (sshfs) => killGroup(sshfs),
  };
}
