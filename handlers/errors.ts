/** An error whose message is meant for the user: it says what went wrong and what to do. */
export class UserError extends Error {
  override name = 'UserError';
}

/** The volume is unknown: dockerd asks Get before every Create, so this is routine, not an error worth logging. */
export class NoSuchVolume extends UserError {
  override name = 'NoSuchVolume';
  constructor(name: string) {
    super(`no such volume: ${name}`);
  }
}

export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * How every front end answers a failed endpoint: a UserError's message as is (it says what to do), anything else as
 * an internal error that points at the plugin log (the front end logs it there).
 */
export function failureOf(error: unknown): { message: string; internal: boolean } {
  if (error instanceof UserError) return { message: error.message, internal: false };
  return { message: `internal error in the sshfs plugin: ${describe(error)} (see the plugin log)`, internal: true };
}
