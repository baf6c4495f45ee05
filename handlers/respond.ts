import { describe, NoSuchVolume, UserError } from './errors.js';
import type { Deps, ErrResponse } from './types.js';

/**
 * Runs a handler body and turns any failure into Docker's error shape: a UserError's message as is,
 * anything else as an internal error that is also logged.
 */
export async function respond<R extends ErrResponse>(
  deps: Deps,
  endpoint: string,
  onError: Omit<R, 'Err'>,
  body: () => Promise<R>,
): Promise<R> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UserError) {
      if (error instanceof NoSuchVolume) deps.log.debug(`${endpoint}: ${error.message}`);
      else deps.log.error(`${endpoint}: ${error.message}`);
      return { ...onError, Err: error.message } as R;
    }
    deps.log.error(`${endpoint}: internal error: ${describe(error)}`);
    return { ...onError, Err: `internal error in the sshfs plugin: ${describe(error)} (see the plugin log)` } as R;
  }
}
