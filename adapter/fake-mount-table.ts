// A mount table that is only a simulation: what is mounted, which mounts lost their sshfs, the shared-login masters
// running, read-ahead values. FakeRunner changes it as the commands it pretends to run would change the real one.
// Unit tests set its state directly; dry runs use it so that nothing on the host is looked at or changed. Its
// `processes` and `readAheadControl` are the matching simulated process table and read-ahead.
import type { MountState, MountTable, ProcessTable, ReadAheadControl } from '../handlers/types.js';

export class FakeMountTable implements MountTable {
  readonly mounted = new Set<string>();
  /** Mounts whose sshfs process is gone (tests add to it to simulate a crash). */
  readonly stale = new Set<string>();
  /** Mounts of each mountpoint's filesystem elsewhere (containers' binds), as tests set them; unset: unknown. */
  readonly users = new Map<string, number>();
  /** Read-ahead set per mountpoint (KiB). */
  readonly readAhead = new Map<string, number>();
  /** Unmounted mounts whose sshfs and ssh were handed over to be ended if they linger: [mountpoint, ssh log file]. */
  readonly retired: [string, string][] = [];
  /** Control paths of the shared ssh connections (masters) running in the simulation. */
  readonly masters = new Set<string>();

  /** print: where a dry run shows the host changes it stands for (the sysfs write of read-ahead). */
  constructor(private readonly print?: (line: string) => void) {}

  async isMounted(path: string): Promise<boolean> {
    return this.mounted.has(path);
  }

  async state(path: string): Promise<MountState> {
    if (!this.mounted.has(path)) return 'absent';
    return this.stale.has(path) ? 'stale' : 'mounted';
  }

  async sshfsMountsUnder(dir: string): Promise<string[]> {
    return [...this.mounted].filter((p) => p.startsWith(`${dir}/`));
  }

  async usersOf(path: string): Promise<number | undefined> {
    return this.users.get(path);
  }

  /** The simulated processes: the masters in `masters`, every volume's ssh up, retired mounts listed in `retired`. */
  readonly processes: ProcessTable = {
    sshConnection: async () => ({ startedAt: new Date(0), reconnected: false }),
    sshMaster: async (controlPath) => (this.masters.has(controlPath) ? { startedAt: new Date(0) } : undefined),
    retire: async (path, sshLogFile) => void this.retired.push([path, sshLogFile]),
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

  /** A mount made (sshfs succeeded). */
  added(mountpoint: string): void {
    this.mounted.add(mountpoint);
  }

  /** A mount gone (fusermount3 succeeded). */
  removed(mountpoint: string): void {
    this.mounted.delete(mountpoint);
    this.stale.delete(mountpoint);
    this.readAhead.delete(mountpoint);
  }
}
