/** An error whose message is meant for the user: it says what went wrong and what to do. */
export class UserError extends Error {
  override name = 'UserError';
}

export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
