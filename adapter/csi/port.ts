// The one place the CSI front end calls the handlers. The handlers speak the VolumeDriver protocol's shapes today
// (Name, Opts, ID, Mountpoint, Err); when they take neutral types, only this module changes.
import { create, mount, remove, unmount } from '../docker/routes.js';
import type { Deps } from '../../handlers/types.js';

/** A handler's refusal (a UserError: its message says what to do) or an internal failure. */
export class HandlerError extends Error {
  constructor(
    message: string,
    readonly internal: boolean,
  ) {
    super(message);
  }
}

/** The endpoint table answers internal failures with this prefix (adapter/docker/routes.ts). */
const INTERNAL_PREFIX = 'internal error in the sshfs plugin';

function check<R extends { Err: string }>(result: R): R {
  if (result.Err !== '') throw new HandlerError(result.Err, result.Err.startsWith(INTERNAL_PREFIX));
  return result;
}

export interface VolumePort {
  /** The volume's stored options (secrets as the store keeps them), or undefined when this node has no such volume. */
  options(name: string): Promise<Record<string, string> | undefined>;
  /** Creates the volume with the same checks as `docker volume create -o`; the same options again is a no-op. */
  create(name: string, options: Record<string, string>): Promise<void>;
  /** Removes the volume (its mount, key file and record); remote files are untouched. */
  remove(name: string): Promise<void>;
  /** Takes the reference `ref` (mounting if needed) and returns where the volume is mounted. */
  acquire(name: string, ref: string): Promise<string>;
  /** Releases the reference `ref`; the last one unmounts. Unknown references are ignored. */
  release(name: string, ref: string): Promise<void>;
  /** How many times `ref` is held on the volume (0 when not, or when there is no such volume). */
  held(name: string, ref: string): Promise<number>;
  /** Every volume and the references it holds. */
  references(): Promise<{ name: string; refs: string[] }[]>;
}

export function volumePort(deps: Deps): VolumePort {
  return {
    async options(name) {
      return (await deps.store.get(name))?.options;
    },
    async create(name, options) {
      check(await create({ Name: name, Opts: options }, deps));
    },
    async remove(name) {
      check(await remove({ Name: name }, deps));
    },
    async acquire(name, ref) {
      return check(await mount({ Name: name, ID: ref }, deps)).Mountpoint;
    },
    async release(name, ref) {
      check(await unmount({ Name: name, ID: ref }, deps));
    },
    async held(name, ref) {
      return (await deps.store.get(name))?.mounts[ref] ?? 0;
    },
    async references() {
      return (await deps.store.list()).map((r) => ({ name: r.name, refs: Object.keys(r.mounts) }));
    },
  };
}
