// The kernel's mount table and the sshfs processes behind it, as this process sees them
// (the plugin's own mount and PID namespaces when it runs as a managed plugin).
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { sshCommand } from '../handlers/sshfs-args.js';
import type { MountState, MountTable, SshConnection } from '../handlers/types.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  /** major:minor of the filesystem: also the name of its /sys/class/bdi entry. */
  device: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(mountinfo: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const mountPoint = fields[4];
    const device = fields[2];
    const fsType = fields[fields.indexOf('-') + 1];
    if (mountPoint !== undefined && device !== undefined && fsType !== undefined && fields.includes('-')) {
      entries.push({ mountPoint: unescape(mountPoint), fsType, device });
    }
  }
  return entries;
}

type ArgvTest = (argv: string[]) => boolean;

/** Processes read per turn of the event loop while scanning /proc: well under a millisecond of blocking each. */
const SCAN_BATCH = 64;

/**
 * Finds processes by their command line. The pid last found for a key is checked first (one small read), so a
 * healthy volume costs no scan of /proc; only a miss (first look after a mount, reconnect, death) scans, once for all
 * the keys that missed, newest process first, stopping when each has been found.
 */
class ProcessFinder {
  private readonly lastPid = new Map<string, string>();

  constructor(private readonly procDir: string) {}

  /**
   * Read synchronously: a procfs read takes microseconds, while a thread-pool round trip per process made the scan
   * that follows each new mount (dockerd's Get before Unmount) take 30-50 ms instead of about 1 ms.
   */
  private argv(pid: string): string[] | undefined {
    try {
      return readFileSync(`${this.procDir}/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return undefined; // the process ended while we looked
    }
  }

  /**
   * A process runs as this plugin's user: any local user can start a process whose command line looks like sshfs
   * serving our mountpoint (argv is theirs to choose), but not one owned by root, so a spoof cannot hide a dead mount.
   */
  private ours(pid: string): boolean {
    try {
      return statSync(`${this.procDir}/${pid}`).uid === this.uid;
    } catch {
      return false;
    }
  }

  private readonly uid = process.getuid?.() ?? 0;

  /** For each lookup, the cached pid while it still matches, else the highest-numbered matching process. */
  async findAll(lookups: ReadonlyArray<readonly [key: string, test: ArgvTest]>): Promise<Array<string | undefined>> {
    const found = lookups.map(([key, test]): string | undefined => {
      const cached = this.lastPid.get(key);
      if (cached === undefined) return undefined;
      const argv = this.argv(cached);
      if (argv !== undefined && test(argv) && this.ours(cached)) return cached;
      this.lastPid.delete(key);
      return undefined;
    });
    const open = () => lookups.flatMap((_, i) => (found[i] === undefined ? [i] : []));
    if (open().length === 0) return found;
    const pids = (await readdir(this.procDir)).filter((d) => /^[0-9]+$/.test(d)).sort((a, b) => Number(b) - Number(a));
    for (let start = 0; start < pids.length; start += SCAN_BATCH) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve)); // let requests in between batches
      for (const pid of pids.slice(start, start + SCAN_BATCH)) {
        const todo = open();
        if (todo.length === 0) break;
        const argv = this.argv(pid);
        if (argv === undefined) continue;
        for (const i of todo) if (lookups[i]?.[1](argv) === true && this.ours(pid)) found[i] = pid;
      }
      if (open().length === 0) break;
    }
    lookups.forEach(([key], i) => {
      const pid = found[i];
      if (pid !== undefined) this.lastPid.set(key, pid);
    });
    return found;
  }

  async find(key: string, test: ArgvTest): Promise<string | undefined> {
    return (await this.findAll([[key, test]]))[0];
  }

  async startSeconds(pid: string): Promise<number | undefined> {
    try {
      return startSecondsAfterBoot(await readFile(`${this.procDir}/${pid}/stat`, 'utf8'));
    } catch {
      return undefined;
    }
  }
}

const isSshfsServing = (path: string): ArgvTest => (argv) => basename(argv[0] ?? '') === 'sshfs' && argv.slice(1).includes(path);

/** The ssh a volume's sshfs runs: it writes its log to the volume's own file (`ssh -E <file>`). */
const isSshLoggingTo = (sshLogFile: string): ArgvTest => (argv) => {
  const e = argv.indexOf('-E');
  return basename(argv[0] ?? '') === 'ssh' && e >= 0 && argv[e + 1] === sshLogFile;
};

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
 * The volume's current ssh connection: the ssh writing its log to sshLogFile (`ssh -E <file> ...`), and whether it
 * started after the sshfs daemon whose ssh_command names that file (then it is a reconnect).
 */
async function sshConnection(procDir: string, finder: ProcessFinder, sshLogFile: string): Promise<SshConnection | undefined> {
  const boot = bootTimeSeconds(await readFile(`${procDir}/uptime`, 'utf8'), Date.now());
  if (boot === undefined) return undefined;
  const [sshPid, sshfsPid] = await finder.findAll([
    [`ssh ${sshLogFile}`, isSshLoggingTo(sshLogFile)],
    [`sshfs ${sshLogFile}`, (argv) => basename(argv[0] ?? '') === 'sshfs' && argv.includes(`ssh_command=${sshCommand(sshLogFile)}`)],
  ]);
  if (sshPid === undefined) return undefined;
  const ssh = await finder.startSeconds(sshPid);
  const sshfs = sshfsPid === undefined ? undefined : await finder.startSeconds(sshfsPid);
  if (ssh === undefined) return undefined;
  return { startedAt: new Date((boot + ssh) * 1000), reconnected: sshfs !== undefined && ssh > sshfs };
}

/** How long sshfs and ssh may take to exit by themselves after their mount is gone. */
const RETIRE_GRACE_MS = 5_000;

/** How long setReadAhead waits for a new mount to answer its first request. */
const INIT_WAIT_MS = 2_000;

/**
 * Waits until FUSE's INIT exchange of a new mount is done: the kernel then lowers the read-ahead to what sshfs answers
 * (128 KiB), undoing a value written before. sshfs exits before its daemon has answered, but every request on the
 * mount waits for INIT, so one stat of its root is enough. That stat runs in a short-lived child process, killed after
 * INIT_WAIT_MS: a server that stalls right now may hang the child, never this process or its thread pool (a stat hung
 * there could never be abandoned, and a few of them would stop every request of every volume).
 */
export function statInChild(path: string, timeoutMs = INIT_WAIT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', 'require("node:fs").statSync(process.argv[1])', path], {
      stdio: 'ignore',
      env: {},
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

export function createProcMountTable(procDir = '/proc', sysDir = '/sys'): MountTable {
  const finder = new ProcessFinder(procDir);
  // Read synchronously: a small procfs file, and one read beats several thread-pool round trips per request.
  const entries = async () => parseMountInfo(readFileSync(`${procDir}/self/mountinfo`, 'utf8'));
  /** The mount's own read_ahead_kb in /sys/class/bdi (named after its major:minor). */
  const readAheadFile = async (path: string): Promise<string> => {
    const entry = (await entries()).find((e) => e.mountPoint === path);
    if (entry === undefined) throw new Error(`${path} is not mounted`);
    if (!/^[0-9]+:[0-9]+$/.test(entry.device)) throw new Error(`unexpected device "${entry.device}" for ${path}`);
    return `${sysDir}/class/bdi/${entry.device}/read_ahead_kb`;
  };
  return {
    async isMounted(path) {
      return (await entries()).some((e) => e.mountPoint === path);
    },
    async state(path): Promise<MountState> {
      const entry = (await entries()).find((e) => e.mountPoint === path);
      if (entry === undefined) return 'absent';
      if (entry.fsType !== 'fuse.sshfs') return 'mounted';
      return (await finder.find(`sshfs ${path}`, isSshfsServing(path))) !== undefined ? 'mounted' : 'stale';
    },
    async sshfsMountsUnder(dir) {
      const prefix = dir.endsWith('/') ? dir : `${dir}/`;
      return (await entries()).filter((e) => e.fsType === 'fuse.sshfs' && e.mountPoint.startsWith(prefix)).map((e) => e.mountPoint);
    },
    sshConnection: (sshLogFile) => sshConnection(procDir, finder, sshLogFile),
    async retire(path, sshLogFile) {
      // Recorded with their start times now, so a later process that reuses a pid is never killed.
      const pids = (await finder.findAll([
        [`sshfs ${path}`, isSshfsServing(path)],
        [`ssh ${sshLogFile}`, isSshLoggingTo(sshLogFile)],
      ])).filter((pid): pid is string => pid !== undefined);
      if (pids.length === 0) return;
      const started = await Promise.all(pids.map((pid) => finder.startSeconds(pid)));
      setTimeout(() => {
        void Promise.all(
          pids.map(async (pid, i) => {
            if (started[i] === undefined || (await finder.startSeconds(pid)) !== started[i]) return;
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              // gone meanwhile
            }
          }),
        );
      }, RETIRE_GRACE_MS).unref();
    },
    async sshMaster(controlPath) {
      // The master the plugin started (shared-ssh.ts): `ssh ... -o ControlMaster=yes -o ControlPath=<path>`. A stopped
      // master renames itself ("[stopped mux]") and no longer counts.
      const pid = await finder.find(`master ${controlPath}`, (argv) =>
        basename(argv[0] ?? '') === 'ssh' && argv.includes('ControlMaster=yes') && argv.includes(`ControlPath=${controlPath}`),
      );
      const boot = bootTimeSeconds(await readFile(`${procDir}/uptime`, 'utf8'), Date.now());
      const started = pid === undefined ? undefined : await finder.startSeconds(pid);
      return boot === undefined || started === undefined ? undefined : { startedAt: new Date((boot + started) * 1000) };
    },
    async setReadAhead(path, kb) {
      const file = await readAheadFile(path);
      if (!(await statInChild(path))) throw new Error(`${path} did not answer within ${INIT_WAIT_MS} ms`);
      // The mount may have gone meanwhile, and a new one reuse its device number: write only to the same mount.
      if ((await readAheadFile(path)) !== file) throw new Error(`${path} was unmounted meanwhile`);
      await writeFile(file, `${kb}\n`, { flag: 'r+' });
      const now = (await readFile(file, 'utf8')).trim();
      if (now !== String(kb)) throw new Error(`the kernel kept read_ahead_kb at ${now}`);
    },
    async readAheadKb(path) {
      try {
        const text = readFileSync(await readAheadFile(path), 'utf8').trim();
        return /^[0-9]+$/.test(text) ? Number(text) : undefined;
      } catch {
        return undefined; // not mounted, or no /sys
      }
    },
  };
}
