import type { KeyedLock } from './types.js';

/** One promise chain per key: operations on one volume run in order, different volumes never wait for each other. */
export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<void>>();
  return {
    async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const previous = tails.get(key) ?? Promise.resolve();
      let release!: () => void;
      const mine = new Promise<void>((resolve) => (release = resolve));
      const tail = previous.then(() => mine);
      tails.set(key, tail);
      await previous;
      try {
        return await fn();
      } finally {
        release();
        // Forget the key once nobody queues behind us, so the map does not grow with every volume ever seen.
        if (tails.get(key) === tail) tails.delete(key);
      }
    },
  };
}
