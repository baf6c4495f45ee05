// The check of a fresh mount (one stat of its root) and the stall watch's probe (one stat of a name that cannot exist):
// bounded in time, never able to block the plugin. The stat runs in libuv's thread pool (a few microseconds when the
// server answers). A stat on a server that does not answer sits in
// the kernel until the mount's FUSE connection is aborted, holding its pool thread that long; the caller aborts the
// connection (or ends sshfs, which does the same) when the time is up, which releases the thread. So that stalled
// servers can never take the whole pool (which every file access of the plugin shares), at most POOL_PROBES stats
// run there at once; beyond that a probe runs in a short-lived child process instead (a Node.js start: tens of ms),
// killed when the time is up.
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import type { ProbeResult } from '../../handlers/types.js';

/** Of libuv's 4 pool threads, at most this many may wait on a mount (fresh, or probed by the stall watch) at once. */
export const POOL_PROBES = 2;

function code(error: unknown): string {
  return error instanceof Error && 'code' in error ? String((error as NodeJS.ErrnoException).code) : String(error);
}

/** The stat in the thread pool; onEnd runs when it really ends (after the caller's abort), not at the deadline. */
function statInPool(path: string, timeoutMs: number, onEnd: () => void): Promise<ProbeResult> {
  let timer: NodeJS.Timeout | undefined;
  const answered = stat(path).then(
    (): ProbeResult => ({ ok: true }),
    (error: unknown): ProbeResult => ({ ok: false, timedOut: false, error: code(error) }),
  );
  void answered.finally(onEnd);
  const late = new Promise<ProbeResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, timedOut: true }), timeoutMs);
  });
  return Promise.race([answered, late]).finally(() => clearTimeout(timer));
}

/** The same stat in a child process, killed after timeoutMs: whatever the server does, only the child waits. */
export function statInChild(path: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['-e', 'require("node:fs").statSync(process.argv[1])', path], {
      stdio: 'ignore',
      env: {},
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    child.once('error', (error) => resolve({ ok: false, timedOut: false, error: code(error) }));
    child.once('exit', (exitCode) => {
      if (exitCode === 0) resolve({ ok: true });
      else resolve({ ok: false, timedOut: exitCode === null && Date.now() - started >= timeoutMs - 50, error: `stat exited with ${String(exitCode)}` });
    });
  });
}

export interface MountProbe {
  /** One bounded stat of a path on a mount: in the thread pool while it has room, else in a child. */
  probe(path: string, timeoutMs: number): Promise<ProbeResult>;
  /** Probes holding a pool thread now. */
  inPool(): number;
}

/** The plugin's one count of pool threads held by probes: made at start-up, with the host view (adapter/deps.ts). */
export function createMountProbe(poolProbes = POOL_PROBES): MountProbe {
  let inPool = 0;
  return {
    probe(path, timeoutMs) {
      if (inPool >= poolProbes) return statInChild(path, timeoutMs);
      inPool += 1;
      return statInPool(path, timeoutMs, () => {
        inPool -= 1;
      });
    },
    inPool: () => inPool,
  };
}
