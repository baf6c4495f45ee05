// A runner that runs nothing: it records each command, answers as scripted (success by default) and applies what a
// successful command would do to a simulated mount table. Unit tests use it directly; DRY_RUN=1 uses it to print the
// exact commands the plugin would run.
import type { CommandRunner, Program, RunOptions, RunResult } from '../handlers/types.js';
import { FakeMountTable } from './fake-mount-table.js';

export interface RecordedCall {
  program: Program;
  args: string[];
  input?: string;
  timeoutMs?: number;
  endGroupOnFailure?: boolean;
}

/** Decides the outcome of a call; return undefined for the default (success). */
export type Script = (call: RecordedCall) => Partial<RunResult> | undefined;

const OK: RunResult = { exitCode: 0, stdout: '', stderr: '', timedOut: false };

export class FakeRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  script: Script = () => undefined;
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

  private simulate(program: Program, args: string[]): void {
    if (program === 'ssh') {
      const path = args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length);
      const command = args.includes('-O') ? args[args.indexOf('-O') + 1] : undefined;
      if (path !== undefined && args.includes('ControlMaster=yes')) this.table.masters.add(path);
      if (path !== undefined && (command === 'exit' || command === 'stop')) this.table.masters.delete(path);
    }
    if (program === 'sshfs' && args[1] !== undefined) this.table.added(args[1]);
    if (program === 'fusermount3') {
      const target = args[args.length - 1];
      if (target !== undefined) this.table.removed(target);
    }
  }
}

/** A shell-like rendering of a call for dry-run output; stdin (the password) is shown masked. */
export function formatCall(call: RecordedCall): string {
  const quote = (a: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const stdin = call.input !== undefined && call.input !== '' ? ' <<< ********' : '';
  return `${[call.program, ...call.args].map(quote).join(' ')}${stdin}`;
}
