// The stall watch: a mount whose server has stopped answering while requests wait on it is aborted after the volume's
// stall_timeout, so that the processes blocked on it (in the kernel, unkillable, `docker rm -f` of their container
// hanging with them) get an error instead of waiting for good; Status then says so, and the next Mount mounts afresh.
//
// "Stalled", precisely: the mount's FUSE connection has requests waiting (fusectl's `waiting` > 0), the watch's own
// probe sent through the mount then (one stat of a random name that cannot exist) stays unanswered, and no answer
// from the server arrives, for stall_timeout seconds. Only answers count as progress: the probe answered (its name is
// new each time, so neither the kernel nor sshfs can answer it from a cache), or bytes read by sshfs's thread that
// reads ssh's answers (so a slow transfer whose probe waits behind big reads still counts as moving). New requests never
// do: sshfs reads them from /dev/fuse on other threads (its whole read byte count, which the watch went by before,
// counted them too, so anything touching the mount kept a dead server from being aborted for good). An idle mount has
// nothing waiting and is never probed. stall_timeout=0 turns it off for a volume (NFS "hard": wait as long as it takes).
// One timer for all volumes; each look reads one small kernel file per mounted volume (a few more per mount with
// requests waiting), sends at most one probe per such mount (never a second while one waits), waits for none of them,
// and holds no lock; only the abort's record update takes the volume's lock, after the abort.
import { randomBytes } from 'node:crypto';
import { describe } from './errors.js';
import type { Deps, FuseConnection, ProbeResult, ProcessId } from './types.js';
import { optionsOrProblem } from './volume.js';
import { OPTION_SPECS } from './options.js';

/** How often mounted volumes are looked at: a stall is acted on within this much after stall_timeout. */
const STALL_CHECK_MS = 2_000;

/** The probe's name in the mount's root; never created, so the server answers "no such file". */
export const STALL_PROBE_PREFIX = '.sshfs-stall-probe-';

interface Probe {
  /** When it was sent (ms since the epoch, the watch's clock). */
  sentAt: number;
  /** Set when the stat returned: any answer (ENOENT, ENOTCONN...) but "no answer within the time". */
  answered: boolean;
}

interface Watched {
  sshfs: ProcessId;
  /** The one probe in flight, or answered since the last look. */
  probe?: Probe;
  /** Bytes of answers sshfs had read at the last look (undefined: not known). */
  answers?: number;
  /** When an answer last arrived while the probe waited (ms since the epoch). */
  answeredAt?: number;
}

export interface StallWatch {
  /** One look at every mounted volume (the timer calls it; tests call it directly). Never rejects. */
  check(): Promise<void>;
  start(): void;
  stop(): void;
}

const same = (a: ProcessId, b: ProcessId) => a.pid === b.pid && a.startTicks === b.startTicks;

/** An answer is anything but the probe's own time running out: an error from the server is an answer too. */
const isAnswer = (result: ProbeResult) => result.ok || !result.timedOut;

export function createStallWatch(deps: Deps): StallWatch {
  const watched = new Map<string, Watched>();
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  let noFusectlLogged = false;

  /** Sends the probe without waiting for it: the look goes on, the answer (if any) is seen by a later look. */
  function sendProbe(entry: Watched, mountpoint: string, timeoutS: number, now: number): void {
    const probe: Probe = { sentAt: now, answered: false };
    entry.probe = probe;
    const name = `${STALL_PROBE_PREFIX}${randomBytes(8).toString('hex')}`;
    // Bounded beyond stall_timeout plus a look, so the watch (not the probe's timer) decides; the abort then ends a
    // stat still waiting (and frees its pool thread). A probe that throws counts as unanswered, never as an answer.
    void deps.mounts
      .probe(`${mountpoint}/${name}`, timeoutS * 1000 + 2 * STALL_CHECK_MS)
      .then((result) => {
        if (isAnswer(result)) probe.answered = true;
      })
      .catch(() => undefined);
  }

  async function look(name: string, sshfs: ProcessId, mountpoint: string, timeoutS: number, now: number): Promise<void> {
    const connection = await deps.mounts.fuseConnection(mountpoint);
    if (connection === undefined) {
      if (!noFusectlLogged) {
        noFusectlLogged = true;
        deps.log.info('fusectl is not mounted at /sys/fs/fuse/connections: stalled servers cannot be seen, stall_timeout has no effect');
      }
      watched.delete(name);
      return;
    }
    let entry = watched.get(name);
    if (entry === undefined || !same(entry.sshfs, sshfs)) {
      entry = { sshfs };
      watched.set(name, entry);
    }
    const probe = entry.probe;
    if (probe === undefined && connection.waiting === 0) {
      entry.answers = undefined; // idle: nothing owed, nothing looked at
      return;
    }
    // Read only while something waits: an idle mount costs the one fusectl read above.
    const answers = await deps.processes?.answersRead(sshfs);
    if (answers !== undefined && entry.answers !== undefined && answers !== entry.answers) entry.answeredAt = now;
    entry.answers = answers;
    if (probe !== undefined && !probe.answered) {
      // Still no answer to the probe: only the server's answers to what was asked before it can put the abort off;
      // new requests arriving meanwhile change nothing.
      if (now - Math.max(probe.sentAt, entry.answeredAt ?? 0) >= timeoutS * 1000) await abortStalled(name, sshfs, connection, timeoutS, now);
      return;
    }
    entry.probe = undefined; // answered: the server answers
    entry.answeredAt = undefined;
    if (connection.waiting > 0) sendProbe(entry, mountpoint, timeoutS, now); // idle mounts are never probed
  }

  async function abortStalled(
    name: string,
    sshfs: ProcessId,
    connection: FuseConnection,
    timeoutS: number,
    now: number,
  ): Promise<void> {
    watched.delete(name);
    // Abort first, without any lock: whatever waits on the mount gets an error now (the probe too). Ending sshfs (this
    // very process, by pid and start time) makes sure of it where the abort alone would leave sshfs waiting.
    const aborted = await connection.abort();
    await deps.processes?.endGroup(sshfs);
    const stalledAt = new Date(now).toISOString();
    deps.log.error(
      `volume ${name}: ${connection.waiting} request(s) waited, with no answer from the server (to them or to a probe through the mount) for ${timeoutS} s ` +
        `(stall_timeout=${timeoutS}); the mount was aborted${aborted ? '' : ' (by ending its sshfs)'} so they fail instead of hanging; ` +
        'the next Mount mounts afresh',
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
      for (const name of watched.keys()) if (!names.has(name)) watched.delete(name);
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
