// Data-path measurements shared by the benchmark and the option sweep: raw sshfs mounts on the host,
// 256 MiB sequential write/read and 2000 small files, and the ssh-pipe ceiling.
import { mkdirSync } from 'node:fs';
import { keyUserSshArgs, type E2EEnv } from '../lib/e2e-env.js';
import { median, run, runOk, sh } from './lib.js';

export const DATA_BYTES = 256 * 1024 * 1024;
export const SMALL_FILES = 2000;

/** Mounts REMOTE (a path on the test sshd) at MNT with raw sshfs: auth options only, plus EXTRA (-o values). */
export async function mountRaw(env: E2EEnv, remote: string, mnt: string, extra: string[] = []): Promise<void> {
  mkdirSync(mnt, { recursive: true });
  const args = [
    `${env.keyUser}@${env.sshHost}:${remote}`, mnt, '-p', String(env.sshPort),
    '-o', `IdentityFile=${env.keyFile}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${env.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes',
    // Without allow_other, containers do not see the FUSE mount through a bind (they get the empty directory below).
    '-o', 'allow_other',
  ];
  for (const o of extra) args.push('-o', o);
  // stdio to /dev/null: the ssh that sshfs starts inherits stderr, and a pipe held open would tie the mount's life
  // to this command's timeout (the plugin sends ssh's stderr to a log file for the same reason).
  await sh(`sshfs ${args.map((a) => `'${a}'`).join(' ')} </dev/null >/dev/null 2>&1`, 30_000);
}

export async function unmountRaw(mnt: string): Promise<void> {
  const r = await run('fusermount3', ['-u', mnt], { timeoutMs: 30_000 });
  if (r.exitCode !== 0) await run('fusermount3', ['-u', '-z', mnt], { timeoutMs: 10_000 });
}

/** Shell snippet (busybox sh or bash) printing elapsed seconds around BODY, from /proc/uptime (10 ms steps). */
export function timed(body: string): string {
  return `a=$(cut -d' ' -f1 /proc/uptime); ${body}; b=$(cut -d' ' -f1 /proc/uptime); echo "ELAPSED $a $b"`;
}

export function elapsedOf(output: string): number {
  const m = /ELAPSED ([0-9.]+) ([0-9.]+)/.exec(output);
  if (m === null) throw new Error(`no timing in output: ${output.slice(-500)}`);
  return Number(m[2]) - Number(m[1]);
}

/** Shell bodies, run either on the host (bash) or in a container (busybox sh); ROOT is the mounted directory. */
export const scripts = {
  write: (src: string, root: string) => timed(`dd if=${src} of=${root}/big bs=1M 2>&1 >/dev/null | grep -v records || true; [ -s ${root}/big ] || exit 1`),
  read: (root: string) => timed(`dd if=${root}/big of=/dev/null bs=1M 2>&1 >/dev/null | grep -v records || true`) + `; wc -c < ${root}/big`,
  small: (root: string) =>
    `mkdir ${root}/small && ` +
    timed(
      `i=0; while [ $i -lt ${SMALL_FILES} ]; do echo $i > ${root}/small/f$i; i=$((i+1)); done; ` +
        `i=0; while [ $i -lt ${SMALL_FILES} ]; do [ -s ${root}/small/f$i ] || echo MISSING; i=$((i+1)); done; ls -l ${root}/small > /dev/null`,
    ),
};

/** MB/s (10^6 bytes per second) for the benchmark's data size. */
export function mbps(seconds: number): number {
  return DATA_BYTES / 1e6 / seconds;
}

/** The ceiling: the same bytes through one ssh connection (handshake time subtracted). Returns seconds. */
export async function sshPipe(env: E2EEnv, srcFile: string, remoteFile: string, cipher: string | undefined, reps: number) {
  const extra = cipher === undefined ? [] : ['-o', `Ciphers=${cipher}`];
  const q = (a: string[]) => a.map((x) => `'${x}'`).join(' ');
  const handshake: number[] = [];
  const write: number[] = [];
  const read: number[] = [];
  for (let i = 0; i < reps; i++) {
    handshake.push((await runOk('ssh', [...keyUserSshArgs(env, extra), 'true'])).ms / 1000);
    write.push((await sh(`cat ${srcFile} | ssh ${q(keyUserSshArgs(env, extra))} 'cat > /dev/null'`)).ms / 1000);
    read.push((await sh(`ssh ${q(keyUserSshArgs(env, extra))} 'cat ${remoteFile}' > /dev/null`)).ms / 1000);
  }
  const hs = median(handshake);
  return { handshake: hs, write: Math.max(0.001, median(write) - hs), read: Math.max(0.001, median(read) - hs) };
}
