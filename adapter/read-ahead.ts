// The kernel read-ahead of the plugin's mounts: each FUSE mount's own /sys/class/bdi/<major:minor>/read_ahead_kb.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { ReadAheadControl } from '../handlers/types.js';
import { readMountInfo } from './proc-mounts.js';

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

export function createReadAhead(procDir = '/proc', sysDir = '/sys'): ReadAheadControl {
  /** The mount's own read_ahead_kb in /sys/class/bdi (named after its major:minor). */
  const readAheadFile = async (path: string): Promise<string> => {
    const entry = readMountInfo(procDir).find((e) => e.mountPoint === path);
    if (entry === undefined) throw new Error(`${path} is not mounted`);
    if (!/^[0-9]+:[0-9]+$/.test(entry.device)) throw new Error(`unexpected device "${entry.device}" for ${path}`);
    return `${sysDir}/class/bdi/${entry.device}/read_ahead_kb`;
  };
  return {
    async set(path, kb) {
      const file = await readAheadFile(path);
      if (!(await statInChild(path))) throw new Error(`${path} did not answer within ${INIT_WAIT_MS} ms`);
      // The mount may have gone meanwhile, and a new one reuse its device number: write only to the same mount.
      if ((await readAheadFile(path)) !== file) throw new Error(`${path} was unmounted meanwhile`);
      await writeFile(file, `${kb}\n`, { flag: 'r+' });
      const now = (await readFile(file, 'utf8')).trim();
      if (now !== String(kb)) throw new Error(`the kernel kept read_ahead_kb at ${now}`);
    },
    async get(path) {
      try {
        const text = readFileSync(await readAheadFile(path), 'utf8').trim();
        return /^[0-9]+$/.test(text) ? Number(text) : undefined;
      } catch {
        return undefined; // not mounted, or no /sys
      }
    },
  };
}
