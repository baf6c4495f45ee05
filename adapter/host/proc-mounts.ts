// The kernel's mount table as this process sees it (the plugin's own mount namespace when it runs as a managed
// plugin), whether the sshfs the plugin started for a mount still runs, and the mount's FUSE connection.
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { MountState, MountTable, ProcessId } from '../../handlers/types.js';

export interface MountEntry {
  mountPoint: string;
  /** The directory of its filesystem mounted there: `/` for a whole filesystem, a subdirectory for a bind mount. */
  root: string;
  fsType: string;
  /** major:minor of the filesystem: also the name of its /sys/class/bdi entry. */
  device: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(mountinfo: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const [, , device, root, mountPoint] = fields;
    const fsType = fields[fields.indexOf('-') + 1];
    if (mountPoint !== undefined && root !== undefined && device !== undefined && fsType !== undefined && fields.includes('-')) {
      entries.push({ mountPoint: unescapeMountField(mountPoint), root: unescapeMountField(root), fsType, device });
    }
  }
  return entries;
}

/** Read synchronously: a small procfs file, and one read beats several thread-pool round trips per request. */
export function readMountInfo(procDir = '/proc'): MountEntry[] {
  return parseMountInfo(readFileSync(`${procDir}/self/mountinfo`, 'utf8'));
}

/**
 * The directory of a mount's FUSE connection in fusectl: named after the device number, which for FUSE (major 0) is
 * its minor. undefined when fusectl is not mounted there (then a connection is aborted by ending its sshfs).
 */
export function fuseConnectionDir(device: string, sysDir = '/sys'): string | undefined {
  const m = /^0:([0-9]+)$/.exec(device);
  return m === null ? undefined : `${sysDir}/fs/fuse/connections/${m[1]}`;
}

/** Aborts the FUSE connection of a fusectl directory: false when fusectl is not mounted, or the connection is gone. */
function abortConnection(dir: string): Promise<boolean> {
  return writeFile(`${dir}/abort`, '1', { flag: 'r+' }).then(
    () => true,
    () => false,
  );
}

export interface ProcMountTableParts {
  /** Whether the sshfs the plugin started for a mount still runs. */
  alive(server: ProcessId): Promise<boolean>;
  /** The fresh-mount check (mount-probe.ts). */
  probe: MountTable['probe'];
  /** Who else holds a mount (mount-users.ts). */
  usersOf?: MountTable['usersOf'];
  procDir?: string;
  sysDir?: string;
}

export function createProcMountTable({ alive, probe, usersOf, procDir = '/proc', sysDir = '/sys' }: ProcMountTableParts): MountTable {
  const entries = () => readMountInfo(procDir);
  const stateOf = async (entry: MountEntry | undefined, server: ProcessId | undefined): Promise<MountState> => {
    if (entry === undefined) return 'absent';
    if (entry.fsType !== 'fuse.sshfs' || server === undefined) return 'mounted';
    // The FUSE server of this mount is the sshfs the plugin started for it: when that process is gone, the kernel
    // has aborted the connection (the device closed with it), and every access fails.
    return (await alive(server)) ? 'mounted' : 'stale';
  };
  /** The fusectl directory of the FUSE mount at path, if path is one. */
  const connectionDirOf = (path: string): string | undefined => {
    const entry = entries().find((e) => e.mountPoint === path);
    return entry === undefined || !entry.fsType.startsWith('fuse') ? undefined : fuseConnectionDir(entry.device, sysDir);
  };
  return {
    async isMounted(path) {
      return entries().some((e) => e.mountPoint === path);
    },
    async deviceOf(path) {
      return entries().find((e) => e.mountPoint === path)?.device;
    },
    async state(path, server): Promise<MountState> {
      return stateOf(entries().find((e) => e.mountPoint === path), server);
    },
    async look(path, server) {
      const entry = entries().find((e) => e.mountPoint === path);
      return entry === undefined ? { state: 'absent' } : { state: await stateOf(entry, server), device: entry.device };
    },
    probe,
    async abort(path) {
      const dir = connectionDirOf(path);
      return dir === undefined ? false : abortConnection(dir);
    },
    async fuseConnection(path) {
      const dir = connectionDirOf(path);
      if (dir === undefined) return undefined;
      let waiting: number;
      try {
        waiting = Number((await readFile(`${dir}/waiting`, 'utf8')).trim());
      } catch {
        return undefined; // fusectl not mounted here
      }
      return { waiting: Number.isInteger(waiting) ? waiting : 0, abort: () => abortConnection(dir) };
    },
    async sshfsMountsUnder(dir) {
      const prefix = dir.endsWith('/') ? dir : `${dir}/`;
      return entries().filter((e) => e.fsType === 'fuse.sshfs' && e.mountPoint.startsWith(prefix)).map((e) => e.mountPoint);
    },
    ...(usersOf === undefined ? {} : { usersOf }),
  };
}
