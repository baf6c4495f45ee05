// Inside the Mount's "sshfs" step: with strace following the plugin and everything it starts during one Mount, when ssh
// started, when its session could take the SFTP INIT, when sftp-server answered, fusermount3's mount, sshfs's exit,
// and FUSE's INIT, which the kernel sends at mount time and the sshfs daemon answers after sshfs has exited.
// Bench only: strace slows every traced call, so the phases are shares of a slower Mount.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { run, sleep, SocketClient, type Plugin } from './lib.js';

export interface Phases {
  /** Phase name -> ms, in the order they happen. */
  phases: Array<[string, number]>;
}

/** One Mount (and its Unmount) of VOLUME on P's socket under `strace -f`; undefined without strace or when a mark is missing. */
export async function tracedMount(p: Plugin, volume: string, id: string): Promise<Phases | undefined> {
  if ((await run('strace', ['-V'])).exitCode !== 0) return undefined;
  const out = path.join(path.dirname(p.logFile), 'mount-strace.txt');
  const tracer = spawn('strace', ['-f', '-tt', '-p', String(p.pid), '-e', 'trace=execve,read,writev,mount,exit_group', '-e', 'signal=none', '-x', '-s', '16', '-o', out], { stdio: 'ignore' });
  const client = new SocketClient(p.socketPath);
  try {
    await sleep(1_000); // attached to every thread
    await client.ok('/VolumeDriver.Mount', { Name: volume, ID: id }, 60_000);
    await sleep(1_500); // the read-ahead's stat, not awaited by the Mount
    tracer.kill('SIGINT');
    await new Promise((resolve) => tracer.once('exit', resolve));
    await client.ok('/VolumeDriver.Unmount', { Name: volume, ID: id }, 60_000);
  } finally {
    client.close();
    if (tracer.exitCode === null) tracer.kill('SIGKILL');
  }
  if (!existsSync(out)) return undefined;
  const phases = parseMountTrace(readFileSync(out, 'utf8'));
  rmSync(out, { force: true });
  return phases;
}

/** Parses `strace -f -tt -x` of the plugin during one Mount into phases (see tracedMount). */
export function parseMountTrace(text: string): Phases | undefined {
  const bytes = (s: string) => Buffer.from([...s.matchAll(/\\x([0-9a-f]{2})/g)].map((m) => parseInt(m[1] ?? '0', 16)));
  const marks = new Map<string, number>();
  const mark = (name: string, t: number) => {
    if (!marks.has(name)) marks.set(name, t);
  };
  let sshfsPid: string | undefined;
  let sshPid: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+) +(\d+):(\d+):([\d.]+) (.*)$/.exec(line);
    if (m === null) continue;
    const [pid, rest] = [m[1] ?? '', m[5] ?? ''];
    const t = (Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4])) * 1000;
    const data = bytes(/"([^"]*)"/.exec(rest)?.[1] ?? '');
    const exec = /^execve\("([^"]*)"/.exec(rest);
    if (exec !== null) {
      if (rest.endsWith('ENOENT (No such file or directory)')) continue; // the search along PATH
      const prog = path.basename(exec[1] ?? '');
      if (prog === 'sshfs' && sshfsPid === undefined) [sshfsPid] = [pid, mark('sshfs', t)];
      else if (prog === 'ssh' && sshfsPid !== undefined && sshPid === undefined) [sshPid] = [pid, mark('ssh', t)];
      else if (prog === 'fusermount3') mark('mount start', t);
      continue;
    }
    if (pid === sshPid) {
      // The session is open: a multiplexing client gets MUX_S_SESSION_OPENED from the master (which then carries
      // sshfs's stdio itself); an ssh of its own starts reading sshfs's SFTP INIT from stdin.
      const isRead = /^read\(\d+, "|read resumed>"/.test(rest);
      const opened = data.length >= 4 && data[0] === 0x80 && data[1] === 0 && data[2] === 0 && data[3] === 6;
      const init = data.length >= 5 && data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 5 && data[4] === 1;
      if (isRead && (opened || init)) mark('session', t);
      continue;
    }
    if (sshfsPid === undefined) continue;
    const isRead = /^read\(\d+, "|read resumed>"/.test(rest);
    const sftpHeader = data.length >= 5 && data[0] === 0 && data[1] === 0; // an SFTP length (ELF headers also read here have byte 4 = 2)
    if (pid === sshfsPid && isRead && sftpHeader && data[4] === 2) mark('version', t); // SSH_FXP_VERSION
    if (pid === sshfsPid && isRead && marks.has('version') && sftpHeader && data[4] === 0x69) mark('root', t); // ATTRS of the root
    if (/^mount\(.*\) = 0$|mount resumed>.*\) = 0$/.test(rest)) mark('mounted', t);
    if (pid === sshfsPid && rest.startsWith('exit_group(')) mark('exit', t);
    // The daemon reads FUSE_INIT (opcode 26) from /dev/fuse, a read into a buffer of a MiB or more, and answers it.
    const fuse = /(?:^read\(\d+, |read resumed>)"[^"]*"(?:\.\.\.)?, (\d+)\) = \d+$/.exec(rest);
    if (fuse !== null && Number(fuse[1]) >= 131072 && data.length >= 8) {
      if (data[4] === 26) mark('init', t);
      else if (marks.has('init')) mark('first request', t);
    }
  }
  const at = (k: string) => marks.get(k);
  const span = (a: string, b: string): number | undefined => {
    const [x, y] = [at(a), at(b)];
    return x === undefined || y === undefined ? undefined : y - x;
  };
  // sshfs 3.7 run as root mounts first (mount(2); fusermount3 otherwise), then starts ssh; the kernel's FUSE INIT waits
  // in /dev/fuse until the daemon, forked at the end, reads it.
  const mounted = at('mounted') !== undefined ? 'mounted' : 'mount start';
  const phases: Array<[string, number | undefined]> = [
    ['mount', span('sshfs', mounted)],
    ['exec ssh', span(mounted, 'ssh')],
    ['ssh session', span('ssh', 'session')],
    ['SFTP init', span('session', 'version')],
    ['root check', span('version', 'root')],
    ['daemonize and exit', span('root', 'exit')],
    ['then: FUSE INIT read by the daemon', span('exit', 'init')],
    ['first request after it', span('init', 'first request')],
  ];
  if (at('sshfs') === undefined || at('exit') === undefined) return undefined;
  // Two marks in the same instant can come out a few µs apart in either order: no negative spans.
  return { phases: phases.flatMap(([k, v]) => (v === undefined ? [] : [[k, Math.max(0, v)] as [string, number]])) };
}
