// The one place the CSI front end calls the handlers: CSI's words (volume ids, publications) to the domain's
// requests, and a handler's failure to a HandlerError that rpc.ts answers with a gRPC status.
import { create } from '../../handlers/endpoints/create.js';
import { mount } from '../../handlers/endpoints/mount.js';
import { remove } from '../../handlers/endpoints/remove.js';
import { unmount } from '../../handlers/endpoints/unmount.js';
import { describe, failureOf } from '../../handlers/errors.js';
import { checkVolumeName } from '../../handlers/requests.js';
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

/**
 * Runs a handler on a checked volume name; whatever fails (the name or the handler) becomes a HandlerError. rpc.ts logs
 * what reaches the caller; an internal failure is logged here too, with what it was doing, as some are only cleaned up.
 */
async function handled<T>(what: string, name: string, deps: Deps, handler: (name: string) => Promise<T>): Promise<T> {
  try {
    return await handler(checkVolumeName(name));
  } catch (error) {
    const { message, internal } = failureOf(error);
    if (internal) deps.log.error(`${what} ${name}: internal error: ${describe(error)}`);
    throw new HandlerError(message, internal);
  }
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
      await handled('Create', name, deps, (checked) => create({ name: checked, options }, deps));
    },
    async remove(name) {
      await handled('Remove', name, deps, (checked) => remove({ name: checked }, deps));
    },
    async acquire(name, ref) {
      return handled('Mount', name, deps, (checked) => mount({ name: checked, ref }, deps));
    },
    async release(name, ref) {
      await handled('Unmount', name, deps, (checked) => unmount({ name: checked, ref }, deps));
    },
    async held(name, ref) {
      return (await deps.store.get(name))?.mounts[ref] ?? 0;
    },
    async references() {
      return (await deps.store.list()).map((r) => ({ name: r.name, refs: Object.keys(r.mounts) }));
    },
  };
}
