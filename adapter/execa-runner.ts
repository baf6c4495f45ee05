// The real command runner: execa without a shell, and only for the programs the plugin is allowed to run.
import { execa } from 'execa';
import type { CommandRunner, Program, RunOptions, RunResult } from '../handlers/types.js';

const PROGRAMS: Record<Program, string> = { sshfs: 'sshfs', fusermount3: 'fusermount3', ssh: 'ssh' };

export function createExecaRunner(): CommandRunner {
  return {
    async run(program: Program, args: string[], options: RunOptions = {}): Promise<RunResult> {
      const binary = PROGRAMS[program];
      if (binary === undefined) throw new Error(`refusing to run ${String(program)}`);
      const result = await execa(binary, args, {
        reject: false,
        input: options.input ?? '',
        ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
        forceKillAfterDelay: 2_000,
        stripFinalNewline: true,
        // Keep a predictable, non-interactive environment: no ssh-askpass, no terminal prompts.
        env: { DISPLAY: '', SSH_ASKPASS: '' },
        maxBuffer: 1_000_000,
      });
      return {
        exitCode: result.exitCode ?? -1,
        stdout: String(result.stdout ?? ''),
        stderr: String(result.stderr ?? ''),
        timedOut: result.timedOut === true,
      };
    },
  };
}
