// Node timers per key, unref'd: a pending delayed unmount must not keep the plugin from exiting on SIGTERM (the
// mount stays, and reconcile arms the delay again at the next start).
import type { Timers } from '../../handlers/types.js';

export function createTimers(): Timers {
  const pending = new Map<string, NodeJS.Timeout>();
  return {
    set(key, ms, fn) {
      clearTimeout(pending.get(key));
      const timer = setTimeout(() => {
        pending.delete(key);
        fn();
      }, ms);
      timer.unref();
      pending.set(key, timer);
    },
    clear(key) {
      clearTimeout(pending.get(key));
      pending.delete(key);
    },
  };
}
