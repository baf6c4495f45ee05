// A runner that runs nothing: it records each command, answers as scripted (success by default) and applies what a
// successful command would do to a simulated mount table. Unit tests use it directly; DRY_RUN=1 uses it to print the
// exact commands the plugin would run.
import { shellQuote } from '../../handlers/diagnose.js';
import type { CommandRunner, Program, RunOptions, RunResult, StartedProcess, StartOptions } from '../../handlers/types.js';
import { FakeMountTable } from './fake-mount-table.js';

export interface RecordedCall {
  program: Program;
  args: string[];
  input?: string;
  timeoutMs?: number;
  endGroupOnFailure?: boolean;
  /** Started as a long-running program (runner.start), with its output going to this file. */
  outputFile?: string;
}

/** Decides the outcome of a call; return undefined for the default (success). */
export type Script = (call: RecordedCall) => Partial<RunResult> | undefined;

const OK: RunResult = { exitCode: 0, stdout: '', stderr: '', timedOut: false };

export class FakeRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  script: Script = () => undefined;
  /** Holds a run() until the promise it returns settles (a command that takes its time); undefined: no wait. */
  hold: (call: RecordedCall) => Promise<void> | undefined = () => undefined;
  /** How often prepare() was called. */
  prepared = 0;

  constructor(
    readonly table: FakeMountTable = new FakeMountTable(),
    private readonly print?: (line: string) => void,
  ) {}

  prepare(): void {
    this.prepared += 1;
  }

  async run(program: Program, args: string[], options: RunOptions = {}): Promise<RunResult> {
    const call: RecordedCall = {
      program,
      args: [...args],
      ...(options.input !== undefined ? { input: options.input } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.endGroupOnFailure === true ? { endGroupOnFailure: true } : {}),
    };
    this.calls.push(call);
    this.print?.(formatCall(call));
    await this.hold(call);
    const result: RunResult = { ...OK, ...(this.script(call) ?? this.defaultResult(program, args)) };
    if (result.exitCode === 0 && !result.timedOut) this.simulate(program, args);
    return result;
  }

  /** `ssh -O check` answers from the simulation unless a script decides. */
  private defaultResult(program: Program, args: string[]): Partial<RunResult> | undefined {
    const o = args.indexOf('-O');
    if (program !== 'ssh' || o < 0) return undefined;
    const path = args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length) ?? '';
    return this.table.masters.has(path) ? undefined : { exitCode: 255, stderr: `Control socket connect(${path}): No such file or directory` };
  }

  /**
   * A long-running program (sshfs -f): a script's failure makes it exit at once with that code (timedOut: it hangs,
   * mounting nothing, until its group is ended); otherwise it runs, and what it does (the mount) is simulated.
   */
  async start(program: Program, args: string[], options: StartOptions): Promise<StartedProcess> {
    const call: RecordedCall = {
      program,
      args: [...args],
      ...(options.input !== undefined ? { input: options.input } : {}),
      outputFile: options.outputFile,
    };
    this.calls.push(call);
    this.print?.(formatCall(call));
    const outcome = this.script(call);
    const id = this.table.spawned();
    let exit: (code: number | null) => void = () => undefined;
    const exited = new Promise<number | null>((resolve) => (exit = resolve));
    this.table.onEnd(id.pid, () => exit(null));
    const endGroup = () => this.table.ended(id.pid);
    if (outcome?.timedOut === true) return { id, exited, endGroup };
    if (outcome !== undefined && (outcome.exitCode ?? 0) !== 0) {
      this.table.ended(id.pid);
      exit(outcome.exitCode ?? 1);
      return { id, exited, endGroup };
    }
    this.simulate(program, args, id.pid);
    return { id, exited, endGroup };
  }

  private simulate(program: Program, args: string[], serverPid?: number): void {
    if (program === 'ssh') {
      const path = args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length);
      const command = args.includes('-O') ? args[args.indexOf('-O') + 1] : undefined;
      if (path !== undefined && args.includes('ControlMaster=yes')) this.table.masters.add(path);
      if (path !== undefined && (command === 'exit' || command === 'stop')) this.table.masters.delete(path);
    }
    if (program === 'sshfs' && args[1] !== undefined) this.table.added(args[1], serverPid);
    if (program === 'fusermount3') {
      const target = args[args.length - 1];
      if (target !== undefined) this.table.removed(target);
    }
  }
}

/** A shell-like rendering of a call for dry-run output; stdin (the password) is shown masked. */
export function formatCall(call: RecordedCall): string {
  const stdin = call.input !== undefined && call.input !== '' ? ' <<< ********' : '';
  return `${[call.program, ...call.args].map(shellQuote).join(' ')}${stdin}`;
}
