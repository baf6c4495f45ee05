// Why sequential reads trail the ssh pipe: read throughput of raw sshfs (the plugin's cipher) against the kernel
// read-ahead and sshfs's SFTP request size, the CPU each process spends per 256 MiB (client and server share this
// machine's cores), the ssh pipe with and without a local reader, and (with strace) the request sizes and the requests
// in flight seen by the sshfs daemon.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { keyUserSshArgs, type E2EEnv } from '../lib/e2e-env.js';
import { mbps, mountRaw, unmountRaw } from './data.js';
import { fmt, load1, log, median, run, sh, sleep } from './lib.js';

/** Settings tried, one change at a time from the plugin's defaults (read_ahead_kb 1024, sshfs's 32 KiB max_read). */
export const READ_CANDIDATES: Array<{ name: string; readAheadKb: number; opts: string[] }> = [
  { name: 'read_ahead_kb=128 (the kernel\'s FUSE default)', readAheadKb: 128, opts: [] },
  { name: 'read_ahead_kb=1024 (plugin default)', readAheadKb: 1024, opts: [] },
  { name: 'read_ahead_kb=4096', readAheadKb: 4096, opts: [] },
  { name: 'read_ahead_kb=8192', readAheadKb: 8192, opts: [] },
  { name: 'read_ahead_kb=1024, max_read=65536', readAheadKb: 1024, opts: ['max_read=65536'] },
  { name: 'read_ahead_kb=4096, max_read=65536', readAheadKb: 4096, opts: ['max_read=65536'] },
];

const CIPHER = ['Ciphers=aes128-gcm@openssh.com', 'Compression=no'];
const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime of PID in ms (all its threads), 0 when it is gone. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number);
  } catch {
    return [];
  }
}

/** PID and everything below it. */
function tree(pid: number): number[] {
  return [pid, ...children(pid).flatMap(tree)];
}

/** The command line of PID as its arguments; [] when it is gone. */
function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return [];
  }
}

/** PIDs whose arguments satisfy TEST, the most recently started first. */
function pidsWhere(test: (argv: string[]) => boolean): number[] {
  const started = (pid: number) => {
    try {
      return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[19]);
    } catch {
      return 0;
    }
  };
  return readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d)).map(Number).filter((p) => test(argvOf(p))).sort((a, b) => started(b) - started(a));
}

/** The test sshd's listener: its sessions (sshd, sftp-server) are the server side of every transfer. */
function sshdListener(env: E2EEnv): number | undefined {
  const config = path.join(env.dir, 'ssh', 'sshd_config');
  // sshd rewrites its title ("sshd: /usr/sbin/sshd -f CONFIG ... [listener] ..."): match the joined arguments.
  return pidsWhere((a) => /^(\S*\/)?sshd\b/.test(a[0] ?? '') && a.join(' ').includes(` ${config} `)).sort((a, b) => a - b)[0];
}

async function setReadAhead(mnt: string, kb: number): Promise<void> {
  await sh(`stat ${mnt} >/dev/null`); // FUSE INIT done: the kernel has set the mount's read-ahead, ours comes after
  const dev = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[4] === mnt)?.[2];
  if (dev === undefined || !/^[0-9]+:[0-9]+$/.test(dev)) throw new Error(`${mnt} is not mounted`);
  await sh(`echo ${kb} > /sys/class/bdi/${dev}/read_ahead_kb`);
}

interface ReadRun {
  seconds: number;
  cpu: { sshfs: number; ssh: number; server: number; reader: number };
}

/** One read of REMOTE/big through a fresh raw sshfs mount; CPU of each side sampled before the mount goes. */
async function readOnce(env: E2EEnv, remote: string, mnt: string, c: (typeof READ_CANDIDATES)[number], listener: number | undefined): Promise<ReadRun> {
  await mountRaw(env, remote, mnt, [...CIPHER, ...c.opts]);
  try {
    await setReadAhead(mnt, c.readAheadKb);
    // The newest sshfs serving MNT and the newest ssh an sshfs started for this port (the one just mounted).
    const sshfs = pidsWhere((a) => a[0] === 'sshfs' && a.includes(mnt)).slice(0, 1);
    const ssh = pidsWhere((a) => a[0] === 'ssh' && a.includes(`-oPort=${env.sshPort}`) && a.at(-1) === 'sftp').slice(0, 1);
    const server = listener === undefined ? [] : tree(listener).filter((p) => p !== listener);
    const sum = (pids: number[]) => pids.reduce((t, p) => t + cpuMs(p), 0);
    const before = { sshfs: sum(sshfs), ssh: sum(ssh), server: sum(server) };
    // The reader is the same dd as in the data section; bash's `time` gives its wall time and its own CPU.
    const r = await sh(`TIMEFORMAT='TIMED %3R %3U %3S'; { time dd if=${mnt}/big of=/dev/null bs=1M 2>/dev/null; } 2>&1`);
    const [, wall = NaN, u = 0, s = 0] = (/TIMED ([0-9.]+) ([0-9.]+) ([0-9.]+)/.exec(r.stdout) ?? []).map(Number);
    return {
      seconds: wall,
      cpu: { sshfs: sum(sshfs) - before.sshfs, ssh: sum(ssh) - before.ssh, server: sum(server) - before.server, reader: (u + s) * 1000 },
    };
  } finally {
    await unmountRaw(mnt);
  }
}

/** The ssh pipe's read three ways (to /dev/null as the ceiling row does, into dd bs=1M as a container reads) and its write. */
export async function pipeOnce(env: E2EEnv, remoteFile: string, src: string): Promise<{ toNull: number; toReader: number; write: number }> {
  const q = (a: string[]) => a.map((x) => `'${x}'`).join(' ');
  const ssh = q(keyUserSshArgs(env, ['-o', CIPHER[0] ?? '', '-o', CIPHER[1] ?? '']));
  const hs = (await sh(`ssh ${ssh} true`)).ms;
  const toNull = (await sh(`ssh ${ssh} 'cat ${remoteFile}' > /dev/null`)).ms - hs;
  const toReader = (await sh(`ssh ${ssh} 'cat ${remoteFile}' | dd of=/dev/null bs=1M 2>/dev/null`)).ms - hs;
  const write = (await sh(`cat ${src} | ssh ${ssh} 'cat > /dev/null'`)).ms - hs;
  return { toNull: toNull / 1000, toReader: toReader / 1000, write: write / 1000 };
}

export interface ReadFindings {
  rows: Array<{ metric: string; value: string; method: string }>;
  /** Median MB/s of the ssh pipe: read to /dev/null, read into a local dd, write. */
  pipe: { toNull: number; toReader: number; write: number };
}

/** Runs every candidate REPS times, interleaved, plus the pipes; then one strace'd read (when strace is there). */
export async function readFindings(env: E2EEnv, work: string, src: string, reps: number): Promise<ReadFindings> {
  const remote = path.join(env.keyRemoteDir, 'reads');
  const mnt = path.join(work, 'reads-mnt');
  await sh(`install -d -o ${env.keyUser} -g ${env.keyUser} ${remote} && cp ${src} ${remote}/big && chown ${env.keyUser}: ${remote}/big`);
  const listener = sshdListener(env);
  const runs = READ_CANDIDATES.map((): ReadRun[] => []);
  const pipes: Array<{ toNull: number; toReader: number; write: number }> = [];
  const loads: number[] = [load1()];
  for (let i = 0; i < reps; i++) {
    pipes.push(await pipeOnce(env, `${remote}/big`, src));
    for (const [j, c] of READ_CANDIDATES.entries()) runs[j]?.push(await readOnce(env, remote, mnt, c, listener));
    loads.push(load1());
  }
  const loadText = `1-min load average ${loads.map((l) => fmt(l, 1)).join(' → ')}`;
  const rows: ReadFindings['rows'] = [];
  const pr = (k: 'toNull' | 'toReader' | 'write') => mbps(median(pipes.map((p) => p[k])));
  rows.push({
    metric: 'ssh pipe (aes128-gcm): read to /dev/null / read into dd / write',
    value: `${fmt(pr('toNull'), 0)} / ${fmt(pr('toReader'), 0)} / ${fmt(pr('write'), 0)} MB/s`,
    method: `median of ${reps}, interleaved with the rows below: \`ssh host 'cat big' > /dev/null\`, \`ssh host 'cat big' | dd of=/dev/null bs=1M\` (a local reader, as in the container), \`cat rand | ssh host 'cat > /dev/null'\`, minus one \`ssh host true\`; ${loadText}`,
  });
  for (const [j, c] of READ_CANDIDATES.entries()) {
    const rs = runs[j] ?? [];
    const m = mbps(median(rs.map((r) => r.seconds)));
    const cpu = (k: keyof ReadRun['cpu']) => fmt(median(rs.map((r) => r.cpu[k])), 0);
    rows.push({
      metric: `raw sshfs read 256 MiB, ${c.name}`,
      value: `${fmt(m, 0)} MB/s (${fmt(m / pr('toNull'), 2)}× / ${fmt(m / pr('toReader'), 2)}× the pipe to /dev/null / into dd); CPU ms sshfs ${cpu('sshfs')}, ssh ${cpu('ssh')}, server ${cpu('server')}, dd ${cpu('reader')}`,
      method: `median of ${reps} (interleaved; ${rs.map((r) => fmt(mbps(r.seconds), 0)).join(', ')} MB/s): fresh raw sshfs mount (-o ${[...CIPHER, ...c.opts].join(',')}), read_ahead_kb set in /sys/class/bdi, \`dd if=big of=/dev/null bs=1M\` on the host; CPU from /proc/PID/stat (sshfs daemon, its ssh, the test sshd's sessions: sshd + sftp-server) and the shell's times (dd)`,
    });
  }
  const traced = await traceRead(env, remote, mnt);
  if (traced !== undefined) rows.push(traced);
  await sh(`rm -rf ${remote}`);
  return { rows, pipe: { toNull: pr('toNull'), toReader: pr('toReader'), write: pr('write') } };
}

/**
 * strace on the sshfs daemon during a 64 MiB read at the plugin's defaults: the size of the kernel's FUSE READ requests,
 * how many are in flight, the SFTP READ size sshfs sends, and how many SFTP READs per MiB. Under strace (slower).
 */
async function traceRead(env: E2EEnv, remote: string, mnt: string): Promise<{ metric: string; value: string; method: string } | undefined> {
  if ((await run('strace', ['-V'])).exitCode !== 0) {
    log('strace is not installed: the request-size row is left out');
    return undefined;
  }
  const out = path.join(path.dirname(mnt), 'reads-strace.txt');
  await mountRaw(env, remote, mnt, CIPHER);
  try {
    await setReadAhead(mnt, 1024);
    const daemon = pidsWhere((a) => a[0] === 'sshfs' && a.includes(mnt))[0];
    if (daemon === undefined) return undefined;
    const tracer = spawn('strace', ['-f', '-tt', '-p', String(daemon), '-e', 'trace=read,writev', '-e', 'signal=none', '-x', '-s', '64', '-o', out], { stdio: 'ignore' });
    await sleep(1_000); // attached to every thread
    await sh(`dd if=${mnt}/big of=/dev/null bs=1M count=64 2>/dev/null`);
    await sleep(300);
    tracer.kill('SIGINT');
    await new Promise((resolve) => tracer.once('exit', resolve));
  } finally {
    await unmountRaw(mnt);
  }
  if (!existsSync(out)) return undefined;
  const t = parseTrace(readFileSync(out, 'utf8'));
  rmSync(out, { force: true });
  return {
    metric: 'what sshfs 3.7 does for a 64 MiB read (read_ahead_kb=1024)',
    value: `FUSE READ requests of ${t.fuseSizes}; at most ${t.fuseMaxInFlight} in flight (time share with 2 or more: ${fmt(t.fuseShare2 * 100, 0)} %); SFTP READ requests of ${t.sftpSizes}, ${fmt(t.sftpPerMiB, 1)} per MiB`,
    method: 'strace -f -tt -e trace=read,writev on the sshfs daemon during `dd bs=1M count=64` from a fresh mount: reads of /dev/fuse with opcode 15 (READ) and their replies, SSH_FXP_READ packets written to ssh',
  };
}

/** Parses the strace output of traceRead. */
export function parseTrace(text: string): { fuseSizes: string; fuseMaxInFlight: number; fuseShare2: number; sftpSizes: string; sftpPerMiB: number } {
  const bytes = (s: string) => Buffer.from([...s.matchAll(/\\x([0-9a-f]{2})/g)].map((m) => parseInt(m[1] ?? '0', 16)));
  const open = new Map<bigint, number>();
  const events: Array<[number, number]> = [];
  const fuseSizes = new Map<number, number>();
  const sftpSizes = new Map<number, number>();
  for (const line of text.split('\n')) {
    const m = /^\d+ +(\d+):(\d+):([\d.]+) (.*)$/.exec(line);
    if (m === null) continue;
    const t = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
    const rest = m[4] ?? '';
    const quoted = /"([^"]*)"/.exec(rest)?.[1] ?? '';
    // A FUSE request read from /dev/fuse: read(fd, "<header>", bufsize) where the header's opcode (byte 4) is 15 = READ.
    // Only /dev/fuse is read into a buffer of a MiB or more; ssh's replies are read by their exact length.
    const fuseRead = /(?:^read\(\d+, |read resumed>)".*"(?:\.\.\.)?, (\d+)\) = \d+$/.exec(rest);
    if (fuseRead !== null && Number(fuseRead[1]) >= 131072) {
      const b = bytes(quoted);
      // fuse_in_header (40 bytes: len, opcode, unique, ...) then fuse_read_in (fh, offset, size at byte 56)
      if (b.length >= 60 && b[4] === 15) {
        open.set(b.readBigUInt64LE(8), t);
        events.push([t, +1]);
        const size = b.readUInt32LE(56);
        fuseSizes.set(size, (fuseSizes.get(size) ?? 0) + 1);
      }
      continue;
    }
    const wv = /^writev\((\d+), \[\{iov_base="([^"]*)"/.exec(rest);
    if (wv === null) continue;
    const b = bytes(wv[2] ?? '');
    if (b.length === 16 && open.has(b.readBigUInt64LE(8))) {
      open.delete(b.readBigUInt64LE(8));
      events.push([t, -1]);
    } else if (b.length >= 9 && b[4] === 5) {
      // SSH_FXP_READ: its length (the request's last uint32) sits in the next iovec
      const second = [...rest.matchAll(/iov_base="([^"]*)"/g)][1]?.[1];
      const body = second === undefined ? undefined : bytes(second);
      if (body !== undefined && body.length >= 4) {
        const size = body.readUInt32BE(body.length - 4);
        sftpSizes.set(size, (sftpSizes.get(size) ?? 0) + 1);
      }
    }
  }
  events.sort((a, b) => a[0] - b[0]);
  let cur = 0;
  let max = 0;
  let last: number | undefined;
  let total = 0;
  let twoPlus = 0;
  for (const [t, d] of events) {
    if (last !== undefined) {
      total += t - last;
      if (cur >= 2) twoPlus += t - last;
    }
    cur += d;
    max = Math.max(max, cur);
    last = t;
  }
  const show = (m: Map<number, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 2).map(([s, n]) => `${s / 1024} KiB (×${n})`).join(', ') || 'none seen';
  const sftpBytes = [...sftpSizes.entries()].reduce((s, [size, n]) => s + size * n, 0);
  const sftpCount = [...sftpSizes.values()].reduce((s, n) => s + n, 0);
  return {
    fuseSizes: show(fuseSizes),
    fuseMaxInFlight: max,
    fuseShare2: total > 0 ? twoPlus / total : NaN,
    sftpSizes: show(sftpSizes),
    sftpPerMiB: sftpBytes > 0 ? sftpCount / (sftpBytes / 1048576) : NaN,
  };
}
