// Stand-ins for the legacy plugins test files have ended, so that later files sharing the dockerd never wait on them.
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

/** The stand-ins of ended plugins (`<pid> <socket>` a line) in the environment's directory: its teardown ends them. */
export const STAND_INS_FILE = 'ended-plugin-stand-ins.pids';

/**
 * Answers every request at once: no volumes, no such volume. It exits when its socket file is replaced or removed,
 * on SIGTERM (removing its socket), and after three hours at the latest.
 */
const STAND_IN_SCRIPT = `
const http = require('node:http'), fs = require('node:fs');
const socket = process.argv[1];
const answers = {
  '/Plugin.Activate': { Implements: ['VolumeDriver'] },
  '/VolumeDriver.Capabilities': { Capabilities: { Scope: 'local' } },
  '/VolumeDriver.List': { Volumes: [], Err: '' },
};
const server = http.createServer({ requireHostHeader: false }, (req, res) => {
  req.resume();
  req.on('end', () => {
    const known = answers[req.url];
    res.writeHead(known ? 200 : 500, { 'Content-Type': 'application/vnd.docker.plugins.v1.1+json' });
    res.end(JSON.stringify(known ?? { Err: 'this test plugin has ended' }));
  });
});
server.listen(socket, () => {
  const inode = fs.statSync(socket).ino;
  const mine = () => { try { return fs.statSync(socket).ino === inode; } catch { return false; } };
  setInterval(() => { if (!mine()) process.exit(0); }, 1000);
  // Ended at teardown: its socket goes with it (every dockerd on the host would find it).
  process.on('SIGTERM', () => { if (mine()) fs.unlinkSync(socket); process.exit(0); });
  setTimeout(() => process.exit(0), 3 * 3600 * 1000);
  process.stdout.write('ready\\n');
});
`;

/**
 * dockerd keeps every legacy plugin it has used until it restarts, and asks each of them on every `docker volume ls`
 * and every inspect of an unknown name, retrying a dead socket for 30 s each time. So once a test file ends its
 * plugin, a stand-in answers on that socket, and later files (which share the dockerd) do not wait on it.
 */
export async function endedPluginStandIn(socketPath: string, dir: string): Promise<void> {
  rmSync(socketPath, { force: true }); // a socket left by a killed plugin or stand-in
  const child = spawn(process.execPath, ['-e', STAND_IN_SCRIPT, socketPath], { detached: true, stdio: ['ignore', 'pipe', 'ignore'], env: {} });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the ended plugin's stand-in on ${socketPath} exited (code ${code})`)));
    child.stdout?.once('data', () => resolve());
  });
  child.removeAllListeners('exit');
  child.stdout?.destroy();
  child.unref();
  if (child.pid !== undefined) appendFileSync(path.join(dir, STAND_INS_FILE), `${child.pid} ${socketPath}\n`);
}

/** Ends the stand-ins of ended plugins (the environment's teardown): each pid only while it still serves its socket. */
export function endStandIns(dir: string): void {
  let lines: string[];
  try {
    lines = readFileSync(path.join(dir, STAND_INS_FILE), 'utf8').split('\n');
  } catch {
    return;
  }
  for (const line of lines) {
    const [pid, socketPath] = line.split(' ');
    if (pid === undefined || socketPath === undefined || !/^[0-9]+$/.test(pid)) continue;
    try {
      // A stand-in that exited by itself (its socket was replaced) may have left its pid to another process.
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[1] === '-e' && argv[3] === socketPath) process.kill(Number(pid), 'SIGTERM');
    } catch {
      // gone already
    }
  }
  rmSync(path.join(dir, STAND_INS_FILE), { force: true });
}

