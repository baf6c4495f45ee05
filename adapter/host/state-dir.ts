// Start-up care of the state directory: one plugin instance at a time, and nothing left over from a crash.
import net from 'node:net';
import { chmod, readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Linux's limit for a Unix socket path (sun_path), less the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export const LOCK_FILE_NAME = 'plugin.lock';

function listen(path: string): Promise<net.Server | 'in-use'> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.destroy());
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve('in-use') : reject(error)));
    server.listen(path, () => resolve(server));
  });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Holds the state directory for this process: a Unix socket in it that the process listens on. A second instance
 * (another PID namespace included: the socket is a file on the shared directory) finds it answering and refuses to
 * start; a socket left by a dead instance answers nothing and is replaced. Released when the process exits.
 * Returns undefined when the path is too long for a socket (the lock is then skipped, and the caller says so).
 */
export async function lockStateDir(stateDir: string): Promise<net.Server | undefined> {
  const path = join(stateDir, LOCK_FILE_NAME);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return undefined;
  const refused = () =>
    new Error(
      `another plugin instance is using the state directory ${stateDir} (it answers on ${path}); two instances would ` +
        'overwrite each other\'s state: stop the other one, or give this one its own STATE_DIR',
    );
  let server = await listen(path);
  if (server === 'in-use') {
    if (await answers(path)) throw refused();
    await unlink(path).catch(() => undefined);
    server = await listen(path);
    if (server === 'in-use') throw refused();
  }
  await chmod(path, 0o600); // like every file of the state: root's only
  server.unref();
  return server;
}

/**
 * Deletes what a crash can leave in the state directory: temp files of interrupted secret writes (`*.tmp-<pid>`, a
 * private key among them) and the key and log files of volumes the state does not hold (a crash between writing a
 * key and saving its volume). Returns the removed paths.
 */
export async function removeLeftovers(stateDir: string, volumes: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const [dir, suffix] of [
    ['keys', '.key'],
    ['logs', '.ssh.log'],
  ] as const) {
    let names: string[];
    try {
      names = await readdir(join(stateDir, dir));
    } catch {
      continue; // not made yet
    }
    for (const name of names) {
      const temp = /\.tmp-[0-9]+$/.test(name);
      const orphan = name.endsWith(suffix) && !volumes.has(name.slice(0, -suffix.length));
      if (!temp && !orphan) continue;
      const path = join(stateDir, dir, name);
      await rm(path, { force: true });
      removed.push(path);
    }
  }
  return removed;
}
