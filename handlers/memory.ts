// What handlers remember between requests, in memory only: one object per plugin, made once with its Deps
// (adapter/deps.ts), never at module level, so two plugins in one process (tests, two front ends) share nothing and
// nothing is keyed by an object's identity.
import type { ParsedOptions } from './volume.js';

export interface Memory {
  /** Each volume's options as parsed, with the stored options they were parsed from (volume.ts). */
  readonly parsedOptions: Map<string, { stored: Record<string, string>; parsed: ParsedOptions }>;
  /** Volume name -> the mount IDs it held when the plugin started, watched until released (inherited.ts). */
  readonly inherited: Map<string, Set<string>>;
  /** Shared login id -> Mounts now starting sshfs over it, not yet recorded as mounted (lifecycle.ts). */
  readonly joiningLogins: Map<string, number>;
  /** Volume name -> its detach going on after the Unmount was answered (lifecycle.ts detachReleased). */
  readonly detaching: Map<string, Promise<void>>;
  /** ssh log file -> its version when last read, and the last thing ssh said in it then (status.ts). */
  readonly sshLogMessages: Map<string, { version: string; message: string | undefined }>;
}

export function createMemory(): Memory {
  return { parsedOptions: new Map(), inherited: new Map(), joiningLogins: new Map(), detaching: new Map(), sshLogMessages: new Map() };
}
