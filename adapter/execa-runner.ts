// The real command runner: child_process.spawn without a shell, and only for the programs the plugin is allowed to
// run. (It used execa, whose machinery cost about 1.3 ms more per run than spawn itself: a fusermount3 inside every
// Unmount that `docker run --rm` waits for. The file keeps its name.)
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { CommandRunner, Program, RunOptions, RunResult, StartedProcess, StartOptions } from '../handlers/types.js';
import { parseStat } from './processes.js';

const PROGRAMS: Record<Program, string> = { sshfs: 'sshfs', fusermount3: 'fusermount3', ssh: 'ssh' };

/** Output kept per stream; a program that says more is ended (none of the allowed ones does). */
const MAX_OUTPUT_BYTES = 1_000_000;
/** How long output may still come after the program exited (from children that inherited its pipes). */
const OUTPUT_AFTER_EXIT_MS = 1_000;
/** After a timeout's SIGTERM, SIGKILL this much later. */
const FORCE_KILL_AFTER_MS = 2_000;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** SIGKILL to every process left in the group the child led (its ssh, typically). */
function endGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // the group is empty already
  }
}

/** The environment every program gets: nothing of the plugin's own (an SSH_AUTH_SOCK, an SSH_ASKPASS, a DISPLAY). */
const programEnv = () => ({ PATH: process.env.PATH || DEFAULT_PATH, LC_ALL: 'C' });

/**
 * Starts a long-running program (sshfs -f) detached: a session and process group of its own (its ssh joins the group,
 * so one kill ends both), output appended to a file (no pipe to the plugin: it outlives a plugin restart, and the
 * plugin reads what it said from the file), stdin closed after the password if any. Its pid and start time are read
 * at once, while it cannot have exited unseen (an exited child stays a zombie until Node reaps it on this thread).
 */
async function startProgram(program: Program, args: string[], options: StartOptions): Promise<StartedProcess> {
  const binary = PROGRAMS[program];
  if (binary === undefined) throw new Error(`refusing to start ${String(program)}`);
  const out = openSync(options.outputFile, 'a', 0o600);
  let child;
  try {
    child = spawn(binary, args, {
      detached: true,
      cwd: '/',
      env: programEnv(),
      stdio: [options.input !== undefined ? 'pipe' : 'ignore', out, out],
    });
  } finally {
    closeSync(out);
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(-1));
    child.once('exit', (code) => resolve(code));
  });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    await exited;
    throw new Error(`${binary} could not be started`);
  }
  if (options.input !== undefined && child.stdin !== null) {
    child.stdin.on('error', () => undefined); // it exited before reading: its exit says why
    child.stdin.end(options.input);
  }
  let startTicks: number | undefined;
  try {
    startTicks = parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.startTicks;
  } catch {
    startTicks = undefined;
  }
  const endGroup = () => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is empty already
    }
  };
  if (startTicks === undefined) {
    endGroup();
    throw new Error(`${binary} (pid ${pid}) could not be identified in /proc`);
  }
  return { id: { pid, startTicks }, exited, endGroup };
}

/** Runs a program to its end: output collected, stdin given INPUT (or closed), ended after timeoutMs. */
function runProgram(program: Program, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const binary = PROGRAMS[program];
  if (binary === undefined) return Promise.reject(new Error(`refusing to run ${String(program)}`));
  const detached = options.endGroupOnFailure === true;
  return new Promise((resolve) => {
    // Only what the programs need: nothing of the plugin's own environment may reach ssh.
    const child = spawn(binary, args, { env: programEnv(), detached, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let timedOut = false;
    let spawnError: Error | undefined;
    const kill = (signal: NodeJS.Signals) => {
      try {
        child.kill(signal);
      } catch {
        // gone already
      }
    };
    let forceKill: NodeJS.Timeout | undefined;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            kill('SIGTERM');
            forceKill = setTimeout(() => kill('SIGKILL'), FORCE_KILL_AFTER_MS);
          }, options.timeoutMs);
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= MAX_OUTPUT_BYTES) into.push(chunk);
      else kill('SIGKILL');
    };
    child.stdout?.on('data', collect(out));
    child.stderr?.on('data', collect(err));
    child.stdin?.on('error', () => undefined); // it exited before reading: its exit says why
    child.stdin?.end(options.input ?? '');
    child.once('error', (error) => {
      spawnError = error;
    });
    // A program's own children can keep its output pipes open after it ended (an ssh's ProxyCommand that ignores the
    // hangup): its end, not theirs, ends the run. Their output after that is not waited for.
    let drain: NodeJS.Timeout | undefined;
    child.once('exit', () => {
      drain = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, OUTPUT_AFTER_EXIT_MS);
    });
    // 'close': the process ended and its output is all read (or it could not be started).
    child.once('close', (code) => {
      clearTimeout(timer);
      clearTimeout(forceKill);
      clearTimeout(drain);
      const failed = timedOut || code !== 0;
      if (detached && failed && child.pid !== undefined) endGroup(child.pid);
      const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      resolve({
        exitCode: spawnError !== undefined ? -1 : (code ?? -1),
        stdout: text(out),
        stderr: spawnError !== undefined ? spawnError.message : text(err),
        timedOut,
      });
    });
  });
}

export function createExecaRunner(): CommandRunner {
  return { start: startProgram, run: runProgram };
}
