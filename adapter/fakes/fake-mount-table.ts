// A mount table that is only a simulation: what is mounted, which mounts lost their sshfs, the processes the plugin
// started, the shared-login masters running, read-ahead values. FakeRunner changes it as the commands it pretends to
// run would change the real one. Unit tests set its state directly; dry runs use it so that nothing on the host is
// looked at or changed. Its `processes` and `readAheadControl` are the matching simulated process table and read-ahead.
import type { FuseConnection, MountLook, MountState, MountTable, ProbeResult, ProcessId, ProcessTable, ReadAheadControl } from '../../handlers/types.js';

export class FakeMountTable implements MountTable {
  readonly mounted = new Set<string>();
  /** Bytes of the server's answers each simulated sshfs has read, as tests set them; unset: cannot be told. */
  readonly answerBytes = new Map<number, number>();
  /** Mounts whose sshfs process is gone (tests add to it to simulate a crash). */
  readonly stale = new Set<string>();
  /** Mounts whose server does not answer: the fresh-mount check times out on them (tests add to it). */
  readonly unanswered = new Set<string>();
  /** Mounts of each mountpoint's filesystem elsewhere (containers' binds), as tests set them; unset: unknown. */
  readonly users = new Map<string, number>();
  /** Read-ahead set per mountpoint (KiB). */
  readonly readAhead = new Map<string, number>();
  /** sshfs processes handed over to be ended should they linger after their mount went. */
  readonly retired: ProcessId[] = [];
  /** Mounts whose FUSE connection was aborted. */
  readonly aborted: string[] = [];
  /** Control paths of the shared ssh connections (masters) running in the simulation. */
  readonly masters = new Set<string>();
  /** Simulated processes the runner started (pid -> id), and the server pid of each mount. */
  readonly running = new Map<number, ProcessId>();
  readonly serverOf = new Map<string, number>();
  private nextPid = 1000;
  private readonly endHooks = new Map<number, () => void>();

  /** print: where a dry run shows the host changes it stands for (the sysfs write of read-ahead). */
  constructor(private readonly print?: (line: string) => void) {}

  async isMounted(path: string): Promise<boolean> {
    return this.mounted.has(path);
  }

  /** Every simulated mount is a FUSE one: major 0, the minor made up. */
  async deviceOf(path: string): Promise<string | undefined> {
    return this.mounted.has(path) ? '0:99' : undefined;
  }

  async state(path: string, server?: ProcessId): Promise<MountState> {
    if (!this.mounted.has(path)) return 'absent';
    if (this.stale.has(path)) return 'stale';
    return server === undefined || this.running.get(server.pid)?.startTicks === server.startTicks ? 'mounted' : 'stale';
  }

  /** Every path probed (a mount's root, or a name below it), in order. */
  readonly probed: string[] = [];
  /** Mounts whose probes get no answer until answerProbes() (tests add to it): the stat waits, as on a stalled server. */
  readonly heldProbes = new Set<string>();
  private readonly held: Array<{ mountpoint: string; answer: (result: ProbeResult) => void }> = [];

  /** Answers the held probes of a mount (as a server that speaks again; an abort answers them with an error too). */
  answerProbes(mountpoint: string, result: ProbeResult = { ok: false, timedOut: false, error: 'ENOENT' }): number {
    const mine = this.held.filter((h) => h.mountpoint === mountpoint);
    for (const h of mine) {
      this.held.splice(this.held.indexOf(h), 1);
      h.answer(result);
    }
    return mine.length;
  }

  /** Probes of a mount still waiting for an answer. */
  heldProbeCount(mountpoint: string): number {
    return this.held.filter((h) => h.mountpoint === mountpoint).length;
  }

  async look(path: string, server?: ProcessId): Promise<MountLook> {
    const state = await this.state(path, server);
    const device = await this.deviceOf(path);
    return device === undefined ? { state } : { state, device };
  }

  async probe(path: string, timeoutMs: number): Promise<ProbeResult> {
    this.probed.push(path);
    const mountpoint = [...this.mounted].find((m) => path === m || path.startsWith(`${m}/`));
    if (mountpoint === undefined) return { ok: false, timedOut: false, error: 'ENOENT' };
    if (this.stale.has(mountpoint)) return { ok: false, timedOut: false, error: 'ENOTCONN' };
    if (this.unanswered.has(mountpoint)) {
      // The real probe waits its whole time; the simulation only says so (tests need not wait).
      void timeoutMs;
      return { ok: false, timedOut: true };
    }
    if (this.heldProbes.has(mountpoint)) return new Promise((answer) => this.held.push({ mountpoint, answer }));
    // A name below the root that nobody made: the server says so.
    return path === mountpoint ? { ok: true } : { ok: false, timedOut: false, error: 'ENOENT' };
  }

  async abort(path: string): Promise<boolean> {
    if (!this.mounted.has(path)) return false;
    this.aborted.push(path);
    this.stale.add(path);
    this.answerProbes(path, { ok: false, timedOut: false, error: 'ECONNABORTED' });
    return true;
  }

  /** Requests waiting on each mount's FUSE connection, as tests set them; unset: no fusectl. */
  readonly waiting = new Map<string, number>();

  async fuseConnection(path: string): Promise<FuseConnection | undefined> {
    const waiting = this.waiting.get(path);
    if (!this.mounted.has(path) || waiting === undefined) return undefined;
    return { waiting, abort: () => this.abort(path) };
  }

  async sshfsMountsUnder(dir: string): Promise<string[]> {
    return [...this.mounted].filter((p) => p.startsWith(`${dir}/`));
  }

  async usersOf(path: string): Promise<number | undefined> {
    return this.users.get(path);
  }

  /** A process started by the runner. */
  spawned(): ProcessId {
    const id = { pid: this.nextPid++, startTicks: 4242 };
    this.running.set(id.pid, id);
    return id;
  }

  /** Called when the process ends (killed, or its mount's sshfs crashed in a test). */
  onEnd(pid: number, fn: () => void): void {
    this.endHooks.set(pid, fn);
  }

  /** A process ended: a mount it served loses its server. */
  ended(pid: number): void {
    this.running.delete(pid);
    const hook = this.endHooks.get(pid);
    this.endHooks.delete(pid);
    hook?.();
  }

  /** The simulated processes: what the runner started; every volume's ssh up (in its group); masters in `masters`. */
  readonly processes: ProcessTable = {
    identify: async (pid) => this.running.get(pid),
    alive: async (p) => this.running.get(p.pid)?.startTicks === p.startTicks,
    groupMember: async (p) => (this.running.get(p.pid)?.startTicks === p.startTicks ? { pid: p.pid + 100_000, startTicks: p.startTicks } : undefined),
    startedAt: () => new Date(0),
    nowTicks: () => 5_000,
    sshMaster: async (controlPath) => (this.masters.has(controlPath) ? { startedAt: new Date(0) } : undefined),
    retire: (sshfs) => void this.retired.push(sshfs),
    answersRead: async (p) => (this.running.get(p.pid)?.startTicks === p.startTicks ? this.answerBytes.get(p.pid) : undefined),
    endGroup: async (sshfs) => {
      if (this.running.get(sshfs.pid)?.startTicks === sshfs.startTicks) this.ended(sshfs.pid);
    },
  };

  /** The simulated read-ahead: values in `readAhead`, the kernel's 128 KiB where none was set. */
  readonly readAheadControl: ReadAheadControl = {
    set: async (path, kb) => {
      if (!this.mounted.has(path)) throw new Error(`${path} is not mounted`);
      this.readAhead.set(path, kb);
      this.print?.(`echo ${kb} > /sys/class/bdi/<device of ${path}>/read_ahead_kb`);
    },
    get: async (path) => (this.mounted.has(path) ? (this.readAhead.get(path) ?? 128) : undefined),
  };

  /** A mount made (sshfs started and mounted), served by serverPid. */
  added(mountpoint: string, serverPid?: number): void {
    this.mounted.add(mountpoint);
    if (serverPid !== undefined) this.serverOf.set(mountpoint, serverPid);
  }

  /** A mount gone (fusermount3 succeeded): its sshfs exits, as the real one does. */
  removed(mountpoint: string): void {
    const server = this.serverOf.get(mountpoint);
    if (server !== undefined) this.ended(server);
    this.answerProbes(mountpoint, { ok: false, timedOut: false, error: 'ENOTCONN' });
    this.mounted.delete(mountpoint);
    this.stale.delete(mountpoint);
    this.unanswered.delete(mountpoint);
    this.readAhead.delete(mountpoint);
    this.serverOf.delete(mountpoint);
  }
}
