// Where a Mount's time goes: one debug line per Mount, e.g. "volume v mount steps: lock 0.1 ms, store 0.3, state 0.2,
// prepare 0.9, shared-login 2.1, sshfs 85.0, check 1.2, read-ahead 0.4, journal 1.0, total 90.8". The bench reads these lines from the
// plugin's output (DEBUG=1) to print the breakdown beside rclone's cold run. A step costs one clock read.
// The Mount hands its steps to lifecycle.ts (ensureMounted), which marks its own; an Unmount is timed the same way
// ("volume v unmount steps: ..."): `docker run --rm` waits for it too.
import type { Logger } from './types.js';

/** Milliseconds from a monotonic clock. */
export type Clock = () => number;

export interface MountSteps {
  /** Ends the step running since the previous mark (or the start) and names it. */
  mark(step: string): void;
  /** Logs the line at debug level (with the total) and returns it. */
  done(): string;
}

const ms = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

export function startMountSteps(name: string, log: Logger, clock: Clock = () => performance.now(), request: 'mount' | 'unmount' = 'mount'): MountSteps {
  const started = clock();
  let last = started;
  const steps: Array<[string, number]> = [];
  return {
    mark(step) {
      const now = clock();
      steps.push([step, now - last]);
      last = now;
    },
    done() {
      const parts = steps.map(([step, took], i) => `${step} ${ms(took)}${i === 0 ? ' ms' : ''}`);
      const line = `volume ${name} ${request} steps: ${[...parts, `total ${ms(last - started)}`].join(', ')}`;
      log.debug(line);
      return line;
    },
  };
}
