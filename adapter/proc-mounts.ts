// The kernel's mount table and the sshfs processes behind it, as this process sees them
// (the plugin's own mount and PID namespaces when it runs as a managed plugin).
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { MountState, MountTable, SshConnection } from '../handlers/types.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(mountinfo: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const mountPoint = fields[4];
    const fsType = fields[fields.indexOf('-') + 1];
    if (mountPoint !== undefined && fsType !== undefined && fields.includes('-')) {
      entries.push({ mountPoint: unescape(mountPoint), fsType });
    }
  }
  return entries;
}

/** Mount points served by a running sshfs, from each sshfs process's command line. */
async function sshfsServedPaths(procDir: string): Promise<Set<string>> {
  const served = new Set<string>();
  const pids = (await readdir(procDir)).filter((d) => /^[0-9]+$/.test(d));
  await Promise.all(
    pids.map(async (pid) => {
      try {
        const argv = (await readFile(`${procDir}/${pid}/cmdline`, 'utf8')).split('\0');
        if (basename(argv[0] ?? '') === 'sshfs') argv.slice(1).forEach((a) => served.add(a));
      } catch {
        // the process ended while we looked
      }
    }),
  );
  return served;
}

/** Linux's USER_HZ: the unit of /proc/<pid>/stat times, 100 on every architecture Docker runs on. */
const TICKS_PER_SECOND = 100;

/** Seconds after boot at which a process started: field 22 of /proc/<pid>/stat (counted after the "(comm)" field). */
export function startSecondsAfterBoot(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks / TICKS_PER_SECOND : undefined;
}

/**
 * The boot time in seconds since the epoch, from /proc/uptime (1/100 s) and the clock now: /proc/stat's btime is cut
 * to whole seconds, which would put every start up to a second early.
 */
export function bootTimeSeconds(procUptime: string, nowMs: number): number | undefined {
  const field = procUptime.trim().split(/\s+/)[0] ?? '';
  return /^[0-9]+(\.[0-9]+)?$/.test(field) ? nowMs / 1000 - Number(field) : undefined;
}

/**
 * The volume's current ssh connection: the latest ssh writing its log to sshLogFile (`ssh -E <file> ...`), and whether
 * it started after the sshfs daemon whose ssh_command names that file (then it is a reconnect).
 */
async function sshConnection(procDir: string, sshLogFile: string): Promise<SshConnection | undefined> {
  const boot = bootTimeSeconds(await readFile(`${procDir}/uptime`, 'utf8'), Date.now());
  if (boot === undefined) return undefined;
  let ssh: number | undefined;
  let sshfs: number | undefined;
  const pids = (await readdir(procDir)).filter((d) => /^[0-9]+$/.test(d));
  await Promise.all(
    pids.map(async (pid) => {
      try {
        const argv = (await readFile(`${procDir}/${pid}/cmdline`, 'utf8')).split('\0');
        const program = basename(argv[0] ?? '');
        const e = argv.indexOf('-E');
        const isSsh = program === 'ssh' && e >= 0 && argv[e + 1] === sshLogFile;
        const isSshfs = program === 'sshfs' && argv.includes(`ssh_command=ssh -E ${sshLogFile}`);
        if (!isSsh && !isSshfs) return;
        const started = startSecondsAfterBoot(await readFile(`${procDir}/${pid}/stat`, 'utf8'));
        if (started === undefined) return;
        if (isSsh && (ssh === undefined || started > ssh)) ssh = started;
        if (isSshfs && (sshfs === undefined || started > sshfs)) sshfs = started;
      } catch {
        // the process ended while we looked
      }
    }),
  );
  if (ssh === undefined) return undefined;
  return { startedAt: new Date((boot + ssh) * 1000), reconnected: sshfs !== undefined && ssh > sshfs };
}

export function createProcMountTable(procDir = '/proc'): MountTable {
  const entries = async () => parseMountInfo(await readFile(`${procDir}/self/mountinfo`, 'utf8'));
  return {
    async isMounted(path) {
      return (await entries()).some((e) => e.mountPoint === path);
    },
    async state(path): Promise<MountState> {
      const entry = (await entries()).find((e) => e.mountPoint === path);
      if (entry === undefined) return 'absent';
      if (entry.fsType !== 'fuse.sshfs') return 'mounted';
      return (await sshfsServedPaths(procDir)).has(path) ? 'mounted' : 'stale';
    },
    async sshfsMountsUnder(dir) {
      const prefix = dir.endsWith('/') ? dir : `${dir}/`;
      return (await entries()).filter((e) => e.fsType === 'fuse.sshfs' && e.mountPoint.startsWith(prefix)).map((e) => e.mountPoint);
    },
    sshConnection: (sshLogFile) => sshConnection(procDir, sshLogFile),
  };
}
