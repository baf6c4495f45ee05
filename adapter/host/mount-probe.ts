// The check of a fresh mount: one stat of its root, bounded in time, that can never block the plugin. The stat runs in
// libuv's thread pool (a few microseconds when the server answers). A stat on a server that does not answer sits in
// the kernel until the mount's FUSE connection is aborted, holding its pool thread that long; the caller aborts the
// connection (or ends sshfs, which does the same) when the time is up, which releases the thread. So that stalled
// servers can never take the whole pool (which every file access of the plugin shares), at most POOL_PROBES stats
// run there at once; beyond that a probe runs in a short-lived child process instead (a Node.js start: tens of ms),
// killed when the time is up.
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import type { ProbeResult } from '../../handlers/types.js';

/** Of libuv's 4 pool threads, at most this many may wait on a fresh mount at once. */
export const POOL_PROBES = 2;

let inPool = 0;

function code(error: unknown): string {
  return error instanceof Error && 'code' in error ? String((error as NodeJS.ErrnoException).code) : String(error);
}

function statInPool(path: string, timeoutMs: number): Promise<ProbeResult> {
  inPool += 1;
  let timer: NodeJS.Timeout | undefined;
  const answered = stat(path).then(
    (): ProbeResult => ({ ok: true }),
    (error: unknown): ProbeResult => ({ ok: false, timedOut: false, error: code(error) }),
  );
  // The count drops when the stat really ends (after the caller's abort), not at the deadline: until then it holds a thread.
  void answered.finally(() => {
    inPool -= 1;
  });
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

export function probeMount(path: string, timeoutMs: number): Promise<ProbeResult> {
  return inPool < POOL_PROBES ? statInPool(path, timeoutMs) : statInChild(path, timeoutMs);
}

/** Probes waiting in the thread pool now (for tests). */
export const probesInPool = (): number => inPool;
