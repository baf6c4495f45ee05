// Turns sshfs/ssh error output into a message that names the cause and the fix.
import type { RunResult } from './types.js';

interface Hint {
  pattern: RegExp;
  hint: (ctx: HintContext) => string;
}

export interface HintContext {
  remote: string;
  knownHostsFile: string;
  timeoutSeconds: number;
}

const HINTS: Hint[] = [
  {
    pattern: /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|No .* host key is known/i,
    hint: (c) =>
      `the server's host key does not match the one pinned in ${c.knownHostsFile}; if the server was really reinstalled, ` +
      `remove its old key (ssh-keygen -R HOST -f ${c.knownHostsFile}) and mount again`,
  },
  {
    pattern: /Permission denied|Too many authentication failures/i,
    hint: () => 'the server refused the login: check the user in sshcmd and the key (-o IdentityFile / -o key) or -o password',
  },
  { pattern: /Connection refused/i, hint: () => 'nothing listens on that host and port: check the host, -o port and that sshd runs' },
  {
    pattern: /Could not resolve hostname|Name or service not known|Temporary failure in name resolution/i,
    hint: () => 'the host name does not resolve where the plugin runs: check sshcmd or use an IP address',
  },
  {
    pattern: /Connection timed out|Operation timed out|No route to host|Network is unreachable/i,
    hint: () => 'the server could not be reached: check the host, -o port and firewalls',
  },
  {
    pattern: /No such file or directory/i,
    hint: (c) => `the remote path in ${c.remote} does not exist on the server: create it or fix sshcmd`,
  },
  { pattern: /Load key .*: (invalid format|error in libcrypto)/i, hint: () => 'the private key is not valid: pass the whole key file' },
  { pattern: /bad permissions|UNPROTECTED PRIVATE KEY FILE/i, hint: () => 'the key file must be readable by its owner only (chmod 600)' },
  { pattern: /fuse: (device not found|failed to open \/dev\/fuse)/i, hint: () => 'FUSE is not available: the plugin needs /dev/fuse and CAP_SYS_ADMIN' },
  { pattern: /Unable to negotiate|no matching cipher/i, hint: () => 'client and server share no algorithm: check -o Ciphers' },
];

/** The most telling line of ssh/sshfs output, without noise like "read: Connection reset by peer". */
export function meaningfulLines(output: string): string[] {
  return output
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^read: Connection reset by peer$/.test(l) && !/^remote host has disconnected$/.test(l))
    // A shared login that is gone: ssh then logs in by itself; not a cause worth showing.
    .filter((l) => !/^(Control socket connect\(|mux_client_)/.test(l))
    .filter((l) => !/^(Warning: Permanently added|SSHFS version|FUSE library version|fusermount3? version)/.test(l));
}

/** The last thing ssh said, for Status: why a connection dropped or a reconnect failed. */
export function lastSshMessage(sshLog: string): string | undefined {
  return meaningfulLines(sshLog).at(-1);
}

export function explainMountFailure(sshfs: RunResult, sshLog: string, ctx: HintContext): string {
  if (sshfs.timedOut) {
    return (
      `sshfs did not connect to ${ctx.remote} within ${ctx.timeoutSeconds} s; ` +
      'the server may be unreachable or not answering: check the host, -o port and firewalls'
    );
  }
  const lines = [...meaningfulLines(sshLog), ...meaningfulLines(sshfs.stderr)];
  const text = lines.join('; ');
  const hint = HINTS.find((h) => h.pattern.test(text));
  const said = text !== '' ? text : `sshfs exited with status ${sshfs.exitCode} and no message`;
  return `mounting ${ctx.remote} failed: ${said}${hint ? ` (${hint.hint(ctx)})` : ''}`;
}
