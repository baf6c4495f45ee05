// The real command runner: execa without a shell, and only for the programs the plugin is allowed to run.
import type { CommandRunner, Program, RunOptions, RunResult } from '../handlers/types.js';

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

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** SIGKILL to every process left in the group the child led (its ssh, typically). */
function endGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // the group is empty already
  }
}

export function createExecaRunner(): CommandRunner {
  return {
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
        // Only what the programs need: nothing of the plugin's own environment (an SSH_AUTH_SOCK, an SSH_ASKPASS,
        // a DISPLAY) may reach ssh.
        extendEnv: false,
        env: { PATH: process.env.PATH || DEFAULT_PATH, LC_ALL: 'C' },
        detached: options.endGroupOnFailure === true,
        maxBuffer: 1_000_000,
      });
      const result = await subprocess;
      const failed = result.timedOut === true || result.exitCode !== 0;
      if (options.endGroupOnFailure === true && failed && subprocess.pid !== undefined) endGroup(subprocess.pid);
      return {
        exitCode: result.exitCode ?? -1,
        stdout: String(result.stdout ?? ''),
        stderr: String(result.stderr ?? ''),
        timedOut: result.timedOut === true,
      };
    },
    prepare() {
      void loadExeca();
    },
  };
}
