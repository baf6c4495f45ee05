// A runner that runs nothing: it records each command, keeps a simulated mount table and answers as scripted.
// Unit tests use it directly; DRY_RUN=1 uses it to print the exact commands the plugin would run.
import type { CommandRunner, MountState, MountTable, Program, RunOptions, RunResult } from '../handlers/types.js';

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

export class FakeRunner implements CommandRunner, MountTable {
  readonly calls: RecordedCall[] = [];
  readonly mounted = new Set<string>();
  /** Mounts whose sshfs process is gone (tests add to it to simulate a crash). */
  readonly stale = new Set<string>();
  script: Script = () => undefined;
  /** How often prepare() was called. */
  prepared = 0;

  prepare(): void {
    this.prepared += 1;
  }

  constructor(private readonly print?: (line: string) => void) {}

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

  async isMounted(path: string): Promise<boolean> {
    return this.mounted.has(path);
  }

  /** Mounts of each mountpoint's filesystem elsewhere (containers' binds), as tests set them; unset: unknown. */
  readonly users = new Map<string, number>();

  async usersOf(path: string): Promise<number | undefined> {
    return this.users.get(path);
  }

  async state(path: string): Promise<MountState> {
    if (!this.mounted.has(path)) return 'absent';
    return this.stale.has(path) ? 'stale' : 'mounted';
  }

  /** Read-ahead set per mountpoint (KiB); a dry run prints it as the sysfs write it stands for. */
  readonly readAhead = new Map<string, number>();

  async setReadAhead(path: string, kb: number): Promise<void> {
    if (!this.mounted.has(path)) throw new Error(`${path} is not mounted`);
    this.readAhead.set(path, kb);
    this.print?.(`echo ${kb} > /sys/class/bdi/<device of ${path}>/read_ahead_kb`);
  }

  async readAheadKb(path: string): Promise<number | undefined> {
    return this.mounted.has(path) ? (this.readAhead.get(path) ?? 128) : undefined;
  }

  /** Unmounted mounts whose sshfs and ssh were handed over to be ended if they linger: [mountpoint, ssh log file]. */
  readonly retired: [string, string][] = [];

  async retire(path: string, sshLogFile: string): Promise<void> {
    this.retired.push([path, sshLogFile]);
  }

  async sshfsMountsUnder(dir: string): Promise<string[]> {
    return [...this.mounted].filter((p) => p.startsWith(`${dir}/`));
  }

  /** Control paths of the shared ssh connections (masters) running in the simulation. */
  readonly masters = new Set<string>();

  async sshMaster(controlPath: string): Promise<{ startedAt: Date } | undefined> {
    return this.masters.has(controlPath) ? { startedAt: new Date(0) } : undefined;
  }

  /** `ssh -O check` answers from the simulation unless a script decides. */
  private defaultResult(program: Program, args: string[]): Partial<RunResult> | undefined {
    const o = args.indexOf('-O');
    if (program !== 'ssh' || o < 0) return undefined;
    const path = args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length) ?? '';
    return this.masters.has(path) ? undefined : { exitCode: 255, stderr: `Control socket connect(${path}): No such file or directory` };
  }

  private simulate(program: Program, args: string[]): void {
    if (program === 'ssh') {
      const path = args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length);
      const command = args.includes('-O') ? args[args.indexOf('-O') + 1] : undefined;
      if (path !== undefined && args.includes('ControlMaster=yes')) this.masters.add(path);
      if (path !== undefined && (command === 'exit' || command === 'stop')) this.masters.delete(path);
    }
    if (program === 'sshfs' && args[1] !== undefined) this.mounted.add(args[1]);
    if (program === 'fusermount3') {
      const target = args[args.length - 1];
      if (target !== undefined) {
        this.mounted.delete(target);
        this.stale.delete(target);
        this.readAhead.delete(target);
      }
    }
  }
}

/** A shell-like rendering of a call for dry-run output; stdin (the password) is shown masked. */
export function formatCall(call: RecordedCall): string {
  const quote = (a: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const stdin = call.input !== undefined && call.input !== '' ? ' <<< ********' : '';
  return `${[call.program, ...call.args].map(quote).join(' ')}${stdin}`;
}
