import type { Logger } from '../handlers/types.js';

/** One line per message: stdout reaches dockerd's log at info, stderr at error (managed plugins). */
export function createLogger(debug: boolean, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Logger {
  const line = (level: string, message: string) => `${new Date().toISOString()} ${level} ${message.replace(/[\r\n]+/g, ' ')}\n`;
  return {
    debug: (m) => {
      if (debug) out.write(line('debug', m));
    },
    info: (m) => out.write(line('info', m)),
    error: (m) => err.write(line('error', m)),
  };
}
