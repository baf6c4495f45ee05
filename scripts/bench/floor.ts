// The least a cold Mount and Unmount can cost while every mount is its own sshfs (the design's): a bare sshfs started
// with spawn over an ssh login already open (a ControlMaster, as the plugin's shared login), timed until its mount
// answers its first request, and a bare `fusermount3 -u`, both without the plugin (no HTTP, no state, no checks of
// its own, no execa). Interleaved with rclone's Mount and Unmount requests straight on its socket, which mount and
// unmount inside rclone's process over an SFTP session it keeps. The difference is what no change to the plugin's
// own code can remove from a cold `docker run`.
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_SSH, DEFAULT_SSHFS } from '../../handlers/options.js';
import { keyUserSshArgs, randomId, type E2EEnv } from '../lib/e2e-env.js';
import { median, run, runOk, SocketClient, sleep, type PeerPlugin } from './lib.js';

export interface FloorFigures {
  /** spawn of sshfs -f until a stat of the mountpoint answers from the new mount (ms, each round). */
  sshfsMount: number[];
  /** spawn of fusermount3 -u until it exits (ms). */
  fusermount: number[];
  rcloneMount: number[];
  rcloneUnmount: number[];
}

/** Runs a program with spawn (no execa), resolving with its exit code once it ends. */
function spawned(program: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: 'ignore' });
    child.once('error', () => resolve(-1));
    child.once('exit', (code) => resolve(code));
  });
}

/**
 * Starts sshfs -f on MNT and waits until a stat of MNT is answered by the new mount (another device than the empty
 * directory's): that stat waits for FUSE's INIT and for sshfs's first SFTP answer, as the plugin's fresh-mount check.
 */
async function bareMount(args: string[], mnt: string, emptyDev: number, deadlineMs: number): Promise<number> {
  const started = performance.now();
  const child = spawn('sshfs', args, { stdio: 'ignore', detached: true });
  child.unref();
  for (;;) {
    if (performance.now() - started > deadlineMs) throw new Error(`bare sshfs did not mount ${mnt} within ${deadlineMs} ms`);
    const s = await stat(mnt);
    if (s.dev !== emptyDev) return performance.now() - started;
    await sleep(0.2);
  }
}

export async function sshfsFloor(env: E2EEnv, dir: string, rc: PeerPlugin, rcVol: string, rounds: number): Promise<FloorFigures> {
  const work = path.join(dir, 'floor');
  const mnt = path.join(work, 'mnt');
  const control = path.join(work, `m-${randomId(3)}`);
  mkdirSync(mnt, { recursive: true });
  const remote = `${env.keyRemoteDir}/floor`;
  await runOk('install', ['-d', '-o', env.keyUser, '-g', env.keyUser, remote]);
  // The plugin's shared login: one master, every sshfs's ssh joins it.
  await runOk('ssh', [...keyUserSshArgs(env, ['-o', 'ControlMaster=yes', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=120', '-N', '-f'])]);
  const args = [`${env.keyUser}@${env.sshHost}:${remote}`, mnt, '-f', '-p', String(env.sshPort)];
  for (const [k, v] of Object.entries(DEFAULT_SSHFS)) args.push('-o', v === '' ? k : `${k}=${v}`);
  args.push('-o', 'ssh_command=ssh -F none', '-o', `IdentityFile=${env.keyFile}`, '-o', `UserKnownHostsFile=${env.knownHostsFile}`);
  for (const [k, v] of Object.entries(DEFAULT_SSH)) args.push('-o', `${k}=${v}`);
  args.push('-o', `ControlPath=${control}`, '-o', 'ControlMaster=no');
  const figures: FloorFigures = { sshfsMount: [], fusermount: [], rcloneMount: [], rcloneUnmount: [] };
  const rcc = new SocketClient(rc.socketPath);
  try {
    const emptyDev = (await stat(mnt)).dev;
    for (let i = 0; i < rounds; i++) {
      figures.sshfsMount.push(await bareMount(args, mnt, emptyDev, 20_000));
      let t = performance.now();
      const code = await spawned('fusermount3', ['-u', mnt]);
      figures.fusermount.push(performance.now() - t);
      if (code !== 0) throw new Error(`fusermount3 -u ${mnt} exited ${String(code)}`);
      await sleep(50); // sshfs and its ssh exit: not part of either side's request
      const id = `bench-floor-${i}-${randomId()}`;
      t = performance.now();
      await rcc.ok('/VolumeDriver.Mount', { Name: rcVol, ID: id }, 60_000);
      figures.rcloneMount.push(performance.now() - t);
      t = performance.now();
      await rcc.ok('/VolumeDriver.Unmount', { Name: rcVol, ID: id }, 60_000);
      figures.rcloneUnmount.push(performance.now() - t);
      await sleep(50);
    }
  } finally {
    rcc.close();
    await run('fusermount3', ['-u', '-z', mnt]);
    await run('ssh', ['-F', 'none', '-O', 'exit', '-o', `ControlPath=${control}`, 'x']);
    rmSync(work, { recursive: true, force: true });
  }
  return figures;
}

/** One line: the floor against rclone's requests, and the least a cold run must cost more than rclone's. */
export function floorSummary(f: FloorFigures, fmt: (n: number, digits: number) => string): { value: string; gapMs: number } {
  const ours = median(f.sshfsMount) + median(f.fusermount);
  const theirs = median(f.rcloneMount) + median(f.rcloneUnmount);
  const gapMs = ours - theirs;
  return {
    gapMs,
    value:
      `bare sshfs over an open login until its first answer ${fmt(median(f.sshfsMount), 1)} + bare fusermount3 -u ${fmt(median(f.fusermount), 1)} = ` +
      `${fmt(ours, 1)} ms; rclone's Mount + Unmount requests ${fmt(median(f.rcloneMount), 1)} + ${fmt(median(f.rcloneUnmount), 1)} = ${fmt(theirs, 1)} ms: ` +
      `at least ${fmt(gapMs, 1)} ms more per cold run`,
  };
}
