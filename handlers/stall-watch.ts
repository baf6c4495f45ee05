// The stall watch: a mount whose server has stopped answering while requests wait on it is aborted after the volume's
// stall_timeout, so that the processes blocked on it (in the kernel, unkillable, `docker rm -f` of their container
// hanging with them) get an error instead of waiting for good; Status then says so, and the next Mount mounts afresh.
//
// "Stalled", precisely: the mount's FUSE connection has requests waiting (fusectl's `waiting` > 0) at every look, and
// the volume's sshfs has read no byte (rchar in /proc/<pid>/io: its ssh's answers, and new requests from the kernel)
// for stall_timeout seconds. A transfer that is slow but moving reads bytes, and an idle mount has nothing waiting:
// neither is ever aborted. stall_timeout=0 turns it off for a volume (NFS "hard" semantics: wait as long as it takes).
// One timer for all volumes; each look reads two small kernel files per mounted volume and holds no lock; only the
// abort's record update takes the volume's lock, after the abort.
import { describe } from './errors.js';
import type { Deps, ProcessId } from './types.js';
import { optionsOrProblem } from './volume.js';
import { OPTION_SPECS } from './options.js';

/** How often mounted volumes are looked at: a stall is acted on within this much after stall_timeout. */
const STALL_CHECK_MS = 2_000;

interface Seen {
  sshfs: ProcessId;
  bytes: number;
  /** When its sshfs last read a byte, or last had nothing waiting (ms since the epoch). */
  since: number;
}

export interface StallWatch {
  /** One look at every mounted volume (the timer calls it; tests call it directly). Never rejects. */
  check(): Promise<void>;
  start(): void;
  stop(): void;
}

const same = (a: ProcessId, b: ProcessId) => a.pid === b.pid && a.startTicks === b.startTicks;

export function createStallWatch(deps: Deps): StallWatch {
  const seen = new Map<string, Seen>();
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  let noFusectlLogged = false;

  async function look(name: string, sshfs: ProcessId, mountpoint: string, timeoutS: number, now: number): Promise<void> {
    const connection = await deps.mounts.fuseConnection(mountpoint);
    const bytes = await deps.processes?.bytesRead(sshfs);
    if (connection === undefined || bytes === undefined) {
      if (connection === undefined && !noFusectlLogged) {
        noFusectlLogged = true;
        deps.log.info('fusectl is not mounted at /sys/fs/fuse/connections: stalled servers cannot be seen, stall_timeout has no effect');
      }
      seen.delete(name);
      return;
    }
    const before = seen.get(name);
    if (before === undefined || !same(before.sshfs, sshfs) || connection.waiting === 0 || bytes !== before.bytes) {
      seen.set(name, { sshfs, bytes, since: now });
      return;
    }
    if (now - before.since < timeoutS * 1000) return;
    seen.delete(name);
    // Abort first, without any lock: whatever waits on the mount gets an error now. Ending sshfs (this very process,
    // by pid and start time) makes sure of it where the abort alone would leave sshfs waiting.
    const aborted = await connection.abort();
    await deps.processes?.endGroup(sshfs);
    const stalledAt = new Date(now).toISOString();
    deps.log.error(
      `volume ${name}: ${connection.waiting} request(s) waited ${timeoutS} s without a byte from the server (stall_timeout=${timeoutS}); ` +
        `the mount was aborted${aborted ? '' : ' (by ending its sshfs)'} so they fail instead of hanging; the next Mount mounts afresh`,
    );
    await deps.locks.withLock(name, async () => {
      const record = await deps.store.get(name);
      if (record?.sshfs === undefined || !same(record.sshfs, sshfs)) return; // mounted afresh meanwhile
      record.stalledAt = stalledAt;
      record.stalledAfterSeconds = timeoutS;
      await deps.store.put(record);
    });
  }

  async function check(): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      const now = deps.now().getTime();
      const names = new Set<string>();
      for (const record of await deps.store.list()) {
        if (record.mountedAt === undefined || record.sshfs === undefined) continue;
        const timeoutS = optionsOrProblem(record, deps).opts?.stallTimeoutSeconds ?? OPTION_SPECS.stall_timeout.default;
        if (timeoutS === 0) continue;
        names.add(record.name);
        try {
          await look(record.name, record.sshfs, record.mountpoint, timeoutS, now);
        } catch (error) {
          deps.log.error(`volume ${record.name}: stall watch: ${describe(error)}`);
        }
      }
      for (const name of seen.keys()) if (!names.has(name)) seen.delete(name);
    } catch (error) {
      deps.log.error(`stall watch: ${describe(error)}`);
    } finally {
      busy = false;
    }
  }

  return {
    check,
    start() {
      timer ??= setInterval(() => void check(), STALL_CHECK_MS);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
