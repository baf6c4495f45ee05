// The real command runner: execa without a shell, and only for the programs the plugin is allowed to run.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { CommandRunner, Program, RunOptions, RunResult, StartedProcess, StartOptions } from '../../handlers/types.js';
import { parseStat } from './processes.js';

const PROGRAMS: Record<Program, string> = { sshfs: 'sshfs', fusermount3: 'fusermount3', ssh: 'ssh' };

// Not loaded at start: execa costs resident memory and load time, and a plugin without volumes runs nothing.
// prepare() loads it in the background once a volume exists, so the first Mount does not pay for the load.
let execaModule: Promise<typeof import('execa')> | undefined;

function loadExeca(): Promise<typeof import('execa')> {
  if (execaModule === undefined) {
    execaModule = import('execa');
    execaModule.catch(() => undefined); // a failed load surfaces in run(), not as an unhandled rejection
  }
  return execaModule;
}

/** How long output may still come after the program exited (from children that inherited its pipes). */
const OUTPUT_AFTER_EXIT_MS = 1_000;

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

export function createExecaRunner(): CommandRunner {
  return {
    start: startProgram,
    async run(program: Program, args: string[], options: RunOptions = {}): Promise<RunResult> {
      const binary = PROGRAMS[program];
      if (binary === undefined) throw new Error(`refusing to run ${String(program)}`);
      const { execa } = await loadExeca();
      const subprocess = execa(binary, args, {
        reject: false,
        input: options.input ?? '',
        ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
        forceKillAfterDelay: 2_000,
        stripFinalNewline: true,
        // Only what the programs need: nothing of the plugin's own environment may reach ssh.
        extendEnv: false,
        env: programEnv(),
        detached: options.endGroupOnFailure === true,
        maxBuffer: 1_000_000,
      });
      // A program's own children can keep its output pipes open after it ended (an ssh's ProxyCommand that ignores the
      // hangup): its end, not theirs, ends the run. Their output after that is not waited for.
      let drain: NodeJS.Timeout | undefined;
      subprocess.once('exit', () => {
        drain = setTimeout(() => {
          subprocess.stdout?.destroy();
          subprocess.stderr?.destroy();
        }, OUTPUT_AFTER_EXIT_MS);
      });
      const result = await subprocess;
      clearTimeout(drain);
      const failed = result.timedOut === true || result.exitCode !== 0;
      if (options.endGroupOnFailure === true && failed && subprocess.pid !== undefined) endGroup(subprocess.pid);
      // No exit code and no timeout: the program could not be started; the reason (e.g. "spawn sshfs ENOENT") stands
      // in for what it would have said.
      const unstarted = result.exitCode === undefined && result.signal === undefined && result.timedOut !== true;
      return {
        exitCode: result.exitCode ?? -1,
        stdout: String(result.stdout ?? ''),
        stderr: unstarted ? (result.originalMessage ?? 'could not be started') : String(result.stderr ?? ''),
        timedOut: result.timedOut === true,
      };
    },
    prepare() {
      void loadExeca();
    },
  };
}
