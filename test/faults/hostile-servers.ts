// Servers under a fault test's control: a second sshd (the environment's users and keys, its own port and host key)
// whose SFTP goes through stall-sftp.mjs, and a TCP server that sends an SSH banner and then nothing.
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startSilentHost, type SilentHost } from '../../scripts/lib/tcp.js';
import {
  descendantsOf,
  e2eDir,
  listProcesses,
  loadEnv,
  randomId,
  readMounts,
  sleep,
  sshProcessesMentioning,
  waitFor,
} from '../e2e/harness.js';

const STALL_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'stall-sftp.mjs');

export interface TestSshd {
  port: number;
  /** The control directory stall-sftp.mjs reads (world-writable: sessions run as the test users). */
  control: string;
  /** Sessions started from now on stall after N client packets (undefined: never by count). */
  stallAfter(n: number | undefined): void;
  /** Sessions started from now on send the server's answers at this many bytes per second (undefined: full speed). */
  slow(bytesPerSecond: number | undefined): void;
  /** Every session stalls now (and until unstall()), whatever it was doing. */
  stallNow(): void;
  unstall(): void;
  /** Lines of stall-sftp.mjs's log, one per session event. */
  sessionLog(): string[];
  /** How many sessions have stalled so far. */
  stalledSessions(): number;
  /** SIGKILL to every per-connection process (sshd session, its SFTP proxy): the connections drop. */
  dropConnections(): Promise<number>;
  /** Stops it (connections first) and starts it again on the same port, with a new host key if asked. */
  restart(opts: { newHostKey: boolean }): Promise<void>;
  /** Stops the listener and every connection, and removes its directory; idempotent. */
  stop(): Promise<void>;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a second sshd from the environment's sshd_config (same users, same authorized keys), on its own port, with
 * its own host key, and `Subsystem sftp node stall-sftp.mjs CONTROL`; extraConfig lines are added at the end (e.g. a
 * `Banner FILE`).
 */
export async function startTestSshd(opts: { extraConfig?: string[] } = {}): Promise<TestSshd> {
  const env = loadEnv();
  const dir = path.join(e2eDir(), 'hostile-sshd', randomId());
  const control = path.join(dir, 'control');
  mkdirSync(control, { recursive: true });
  chmodSync(control, 0o1777);
  const conf = path.join(dir, 'sshd_config');
  const hostKey = path.join(dir, 'host_key');
  const pidFile = path.join(dir, 'sshd.pid');
  const logFile = path.join(dir, 'sshd.log');
  const base = readFileSync(path.join(env.dir, 'ssh', 'sshd_config'), 'utf8');
  let port = 0;
  let listener = 0;

  const newHostKey = async () => {
    rmSync(hostKey, { force: true });
    rmSync(`${hostKey}.pub`, { force: true });
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hostile-sshd', '-f', hostKey]);
  };
  const launch = async () => {
    const text = base
      .split('\n')
      .map((line) => {
        if (/^Port /.test(line)) return `Port ${port}`;
        if (/^HostKey /.test(line)) return `HostKey ${hostKey}`;
        if (/^PidFile /.test(line)) return `PidFile ${pidFile}`;
        if (/^Subsystem /.test(line)) return `Subsystem sftp ${process.execPath} ${STALL_SCRIPT} ${control}`;
        return line;
      })
      .concat(opts.extraConfig ?? [])
      .join('\n');
    writeFileSync(conf, text);
    rmSync(pidFile, { force: true });
    const r = await execa('/usr/sbin/sshd', ['-f', conf, '-E', logFile], { reject: false, input: '' });
    if (r.exitCode !== 0) throw new Error(`sshd on port ${port} did not start: ${r.stderr} (log ${logFile})`);
    await waitFor(`the test sshd to listen on ${port}`, async () => existsSync(pidFile) && (await accepts(port)), 10_000, 50);
    listener = Number(readFileSync(pidFile, 'utf8').trim());
  };
  const connections = async () => descendantsOf(await listProcesses(), listener).filter((p) => p.state !== 'Z');
  const dropConnections = async () => {
    const procs = await connections();
    for (const p of procs) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    return procs.length;
  };
  const stop = async () => {
    if (listener === 0) return;
    await dropConnections();
    try {
      process.kill(listener, 'SIGTERM');
    } catch {
      // gone already
    }
    const pid = listener;
    await waitFor(`the test sshd ${pid} to exit`, () => !alive(pid), 10_000, 50);
    listener = 0;
  };

  await newHostKey();
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt >= 3) throw error; // a port found free can be taken before sshd binds it
    }
  }
  const logLines = () => (existsSync(path.join(control, 'sessions.log')) ? readFileSync(path.join(control, 'sessions.log'), 'utf8').split('\n').filter((l) => l !== '') : []);
  return {
    port,
    control,
    stallAfter(n) {
      if (n === undefined) rmSync(path.join(control, 'stall-after'), { force: true });
      else writeFileSync(path.join(control, 'stall-after'), `${n}\n`);
    },
    slow(bps) {
      if (bps === undefined) rmSync(path.join(control, 'slow-bps'), { force: true });
      else writeFileSync(path.join(control, 'slow-bps'), `${bps}\n`);
    },
    stallNow: () => writeFileSync(path.join(control, 'stall-now'), ''),
    unstall: () => rmSync(path.join(control, 'stall-now'), { force: true }),
    sessionLog: logLines,
    stalledSessions: () => logLines().filter((l) => l.includes(' stalled (')).length,
    dropConnections,
    async restart({ newHostKey: rekey }) {
      await stop();
      if (rekey) await newHostKey();
      await launch();
    },
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP server on 127.0.0.1 that greets like OpenSSH and then never sends another byte. */
export const startBannerServer = (): Promise<SilentHost> => startSilentHost('SSH-2.0-OpenSSH_9.2p1\r\n');

/**
 * Ends every sshfs and ssh process of a plugin (by its mount root and state dir in their argv) with SIGKILL, which also
 * aborts their FUSE connections (requests stuck on a stalled server then fail), and lazily detaches every mount left
 * under the mount root. For cleanup after a test that may have failed halfway. Returns how many processes it ended.
 */
export async function abortSshfsOf(mountRoot: string, stateDir: string): Promise<number> {
  const procs = [...(await sshProcessesMentioning(`${mountRoot}/`)), ...(await sshProcessesMentioning(`${stateDir}/`))];
  const pids = new Set(procs.map((p) => p.pid));
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await sleep(200);
  const mounts = (await readMounts()).filter((m) => m.mountpoint.startsWith(`${mountRoot}/`));
  for (const m of mounts) await execa('umount', ['-l', m.mountpoint], { reject: false });
  return pids.size;
}
