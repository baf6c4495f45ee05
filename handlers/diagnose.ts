// Turns sshfs/ssh error output into a message that names the cause and the fix, keeping ssh's own line.
//
// Server text is data, never advice. A hint comes only from a whole line of ssh's own log (`ssh -E`) or of sshfs's own
// messages: the server's banner, which ssh prints straight to its stderr, never reaches either (sshfs sends its ssh's
// stderr to /dev/null; the shared login's master, run directly, has its stderr, the banner, left out), and what a
// server can put in the log (its disconnect reason, its algorithm offer) sits inside one sanitized line after ssh's own
// words, which the anchored patterns below never take for the start of a message. Whatever is quoted is cut to
// MAX_QUOTED_CHARS.
import { createHmac } from 'node:crypto';
import type { Config, Deps, RunResult } from './types.js';
import { jumpHostText, remoteText, type VolumeOptions } from './options.js';

/** The most of ssh's or sshfs's output an Err, Status or log line quotes; the rest is cut with a marker. */
export const MAX_QUOTED_CHARS = 2000;

export interface HintContext {
  remote: string;
  /** The user sshcmd names; undefined: ssh logged in as the plugin's own user (root). */
  user?: string;
  /** The known_hosts file ssh checked, as the plugin sees it. */
  knownHostsFile: string;
  /** That file's text (when it could be read whole): a hint names one of its lines only after checking it there. */
  knownHosts?: string;
  /** How ssh names the volume's server in known_hosts and in its messages: `host`, or `[host]:port` off port 22. */
  hostKeyName?: string;
  /** Plugin-side directory -> the same directory on the Docker host (a managed plugin's state mount). */
  hostDirs?: Record<string, string>;
  timeoutSeconds: number;
  /** The volume's private key is encrypted: ssh in batch mode skips it without a word. */
  keyNeedsPassphrase?: boolean;
  /** The algorithm options the user gave, e.g. "-o Ciphers=aes999": ssh refuses bad names silently under sshfs. */
  algorithms?: string;
  /** The volume's key is an RSA key (an old server may accept only ssh-rsa signatures for it). */
  keyIsRsa?: boolean;
  /** The volume's jump hosts as written (-o ProxyJump), and what each one's ssh said, in the same order. */
  jumpHosts?: string[];
  jumpHostLogs?: string[];
}

interface Rule {
  /** Tested against each whole line (anchored at its start); the first rule with a matching line wins. */
  pattern: RegExp;
  hint: (match: RegExpMatchArray, ctx: HintContext, lines: readonly string[]) => string;
  /** Show only the matching line of ssh's output (for ssh's multi-line warnings). */
  onlyMatchingLine?: boolean;
}

/** Where the user finds a plugin-side path: on the Docker host for a managed plugin's mounts, else as it is. */
export function pathForUser(path: string, hostDirs: Record<string, string> = {}): { path: string; onHost: boolean } {
  for (const [inside, host] of Object.entries(hostDirs)) {
    if (path === inside || path.startsWith(`${inside}/`)) return { path: host + path.slice(inside.length), onHost: true };
  }
  return { path, onHost: false };
}

/** A word as a shell reads it back: as is when it holds nothing the shell treats specially, else single-quoted. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Text from ssh, sshfs or a server, as an Err or Status may quote it: control characters shown as ?, cut to a size. */
export function quoted(text: string, max = MAX_QUOTED_CHARS): string {
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max)} [... ${clean.length - max} more characters cut]`;
}

/**
 * True when line `n` (1-based) of a known_hosts text holds `host`, in plain (`name,name2 keytype key`) or hashed
 * (`|1|salt|hash`) form, after an optional @marker.
 */
export function knownHostsLineHolds(knownHosts: string, n: number, host: string): boolean {
  const line = knownHosts.split('\n')[n - 1];
  if (line === undefined) return false;
  const fields = line.trim().split(/\s+/);
  const names = (fields[0]?.startsWith('@') ? fields[1] : fields[0]) ?? '';
  const wanted = host.toLowerCase();
  return names.split(',').some((name) => {
    const hashed = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/.exec(name);
    if (hashed === null) return name.toLowerCase() === wanted;
    return createHmac('sha1', Buffer.from(hashed[1] ?? '', 'base64')).update(wanted).digest('base64') === hashed[2];
  });
}

function hostKeyChanged(host: string, ctx: HintContext, lines: readonly string[]): string {
  if (ctx.hostKeyName !== undefined && host.toLowerCase() !== ctx.hostKeyName.toLowerCase()) {
    // Not the server this volume connects to: no command that would unpin another server's key.
    return `ssh could not verify the host key of ${host}, which is not this volume's server ${ctx.hostKeyName}; nothing was mounted`;
  }
  const file = pathForUser(ctx.knownHostsFile, ctx.hostDirs);
  // ssh's "Offending KEYTYPE key in FILE:N", named only when FILE is the file this volume uses and line N holds the host.
  const offending = lines
    .map((l) => /^Offending \S+ key in (\S+):(\d+)$/.exec(l))
    .find((m) => m !== null && m[1] === ctx.knownHostsFile && ctx.knownHosts !== undefined && knownHostsLineHolds(ctx.knownHosts, Number(m[2]), host));
  const where = file.onHost ? ' on the Docker host' : '';
  return (
    `the host key of ${host} is not the one pinned in ${file.path}${offending ? ` (line ${offending[2]})` : ''}: ` +
    `if the server was reinstalled or its key replaced, run${where} ssh-keygen -R ${shellQuote(host)} -f ${shellQuote(file.path)} ` +
    'and mount again; if not, someone may be intercepting the connection'
  );
}

function hostUnknown(m: RegExpMatchArray, ctx: HintContext): string {
  const file = pathForUser(ctx.knownHostsFile, ctx.hostDirs);
  return (
    `StrictHostKeyChecking=yes connects only to servers already listed in ${file.path}${file.onHost ? ' (on the Docker host)' : ''}, ` +
    `and ${m[1] ?? 'this host'} is not: add its key there after checking its fingerprint, ` +
    'or leave StrictHostKeyChecking out to pin the key at the first mount (accept-new)'
  );
}

/** Algorithms OpenSSH no longer offers by default that old servers may still offer alone: the option that adds each. */
const LEGACY_OPT_IN = new Map([
  ['ssh-rsa', 'HostKeyAlgorithms'],
  ['ssh-rsa-cert-v01@openssh.com', 'HostKeyAlgorithms'],
]);

function noCommonAlgorithm(m: RegExpMatchArray): string {
  const what = m[1] ?? 'algorithm';
  // The offer is the server's text, at the end of ssh's own line: only matched against known names, quoted when shown.
  const offer = (/ Their offer: (\S+)$/.exec(m.input ?? '')?.[1] ?? '').split(',');
  const legacy = offer.find((name) => LEGACY_OPT_IN.has(name));
  if (/host key/.test(what) && legacy !== undefined) {
    return (
      `the server offers only ${quoted(offer.join(', '), 200)} host keys, signed with SHA-1, which ssh no longer accepts by default: ` +
      `update the server's host key if you can; else add -o ${LEGACY_OPT_IN.get(legacy) ?? 'HostKeyAlgorithms'}=+${legacy} to the volume (the risk: ` +
      'SHA-1 signatures can be forged with enough computing power, so someone able to intercept the connection could pose as the server)'
    );
  }
  const option = /cipher/.test(what) ? ' -o Ciphers' : /key exchange/.test(what) ? ' -o KexAlgorithms' : '';
  return option !== ''
    ? `the server offers no ${what} this volume allows: choose one of the server's offer with${option}, or leave${option} out`
    : `the server offers no ${what} ssh accepts; the plugin has no option for it: the server's configuration must change`;
}

function loginRefused(_m: RegExpMatchArray, ctx: HintContext): string {
  if (ctx.keyNeedsPassphrase) {
    return (
      'the private key is protected by a passphrase, which the plugin cannot type, so ssh did not use it: ' +
      "give a copy of the key without one (ssh-keygen -p -N '' -f COPY)"
    );
  }
  if (ctx.user === undefined) {
    return 'sshcmd names no user, so ssh logged in as root, the plugin\'s own user: write user@host in sshcmd';
  }
  const rsa = ctx.keyIsRsa
    ? '; if the key is right and the server is old (it may accept RSA keys only with SHA-1 ssh-rsa signatures), ' +
      '-o PubkeyAcceptedAlgorithms=+ssh-rsa lets ssh sign that way (the risk: SHA-1 signatures are weaker; prefer an ed25519 key)'
    : '';
  return `the server refused the login: check the user in sshcmd and the key (-o IdentityFile / -o key) or -o password${rsa}`;
}

const escapeRegExp = (text: string) => text.replace(/[$()*+.?[\\\]^{|}]/g, '\\$&');

// Each pattern is ssh's (OpenSSH 9.2) or sshfs's (3.7.3) own line, from its start; where a line ends in text a server
// chose (an algorithm offer, a disconnect reason), only the part before it is matched.
const RULES: Rule[] = [
  {
    pattern: /^Host key for (\S+) has changed and you have requested strict checking\.$/,
    hint: (m, c, l) => hostKeyChanged(m[1] ?? 'HOST', c, l),
    onlyMatchingLine: true,
  },
  { pattern: /^No \S+ host key is known for (\S+) and you have requested strict checking\.$/, hint: hostUnknown, onlyMatchingLine: true },
  {
    pattern: /^@ +WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! +@$/,
    hint: (_m, c, l) => hostKeyChanged(c.hostKeyName ?? 'HOST', c, l),
  },
  { pattern: /^Host key verification failed\.$/, hint: () => "ssh could not verify the server's host key" },
  { pattern: /^Unable to negotiate with \S+ port \d+: no matching (cipher|key exchange method|host key type|MAC) found\./, hint: noCommonAlgorithm },
  {
    pattern: /^(command-line line \d+: )?(Bad SSH2 (cipher spec|KexAlgorithms) |Unsupported KEX algorithm)/,
    hint: () => 'ssh does not know that name: check -o Ciphers / -o KexAlgorithms (ssh -Q cipher and ssh -Q kex list the names)',
  },
  { pattern: /^\S+: Permission denied \(/, hint: loginRefused },
  {
    pattern: /^ssh: connect to host \S+ port \d+: Connection refused$/,
    hint: () => 'nothing listens on that host and port: check the host, -o port and that sshd runs',
  },
  {
    pattern: /^ssh: Could not resolve hostname \S+: /,
    hint: () => 'the host name does not resolve where the plugin runs: check sshcmd or use an IP address',
  },
  {
    pattern: /^Connection timed out during banner exchange$/,
    hint: () => 'the server accepted the connection but sent no SSH greeting within ConnectTimeout: check -o port and that an sshd answers there',
  },
  {
    pattern: /^ssh: connect to host \S+ port \d+: (Connection timed out|Operation timed out|No route to host|Network is unreachable)$/,
    hint: () => 'the server could not be reached: check the host, -o port and firewalls',
  },
  { pattern: /^Load key "[^"]*": (invalid format|error in libcrypto)$/, hint: () => 'the private key is not valid: pass the whole key file' },
  {
    pattern: /^(bad permissions: ignore key: |Permissions 0[0-7]+ for '.*' are too open\.$|@ +WARNING: UNPROTECTED PRIVATE KEY FILE! +@$)/,
    hint: () => 'the key file must be readable by its owner only (chmod 600)',
  },
  {
    pattern: /^fuse: (device not found|failed to open \/dev\/fuse)/,
    hint: () => 'FUSE is not available: the plugin needs /dev/fuse and CAP_SYS_ADMIN',
  },
  {
    pattern: /^fuse: unknown option\(s\): .-o no_contain_symlinks.$/,
    hint: () => 'this sshfs is older than contain_symlinks and follows every symlink already: leave -o contain_symlinks out',
  },
];

/** sshfs's "<remote>: No such file or directory" for the volume's own remote path. */
function missingRemotePath(ctx: HintContext): Rule {
  return {
    pattern: new RegExp(`^${escapeRegExp(ctx.remote)}: No such file or directory$`),
    hint: (_m, c) => `the remote path in ${c.remote} does not exist on the server: create it or fix sshcmd`,
  };
}

/** The most telling lines of ssh/sshfs output, without noise like "read: Connection reset by peer". */
export function meaningfulLines(output: string): string[] {
  return output
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^read: Connection reset by peer$/.test(l) && !/^remote host has disconnected$/.test(l))
    // A shared login that is gone: ssh then logs in by itself; not a cause worth showing.
    .filter((l) => !/^(Control socket connect\(|mux_client_)/.test(l))
    .filter((l) => !/^(Warning: Permanently added|SSHFS version|FUSE library version|fusermount3? version)/.test(l));
}

/** The last thing ssh said, for Status: why a connection dropped or a reconnect failed (cut to a fixed size). */
export function lastSshMessage(sshLog: string): string | undefined {
  const last = meaningfulLines(sshLog).at(-1);
  return last === undefined ? undefined : quoted(last);
}

/** The first rule a line of LINES matches, as "<what ssh said> (<hint>)", the quote cut to size. */
function explainLines(lines: readonly string[], ctx: HintContext): string | undefined {
  for (const rule of [...RULES, missingRemotePath(ctx)]) {
    for (const line of lines) {
      const match = rule.pattern.exec(line);
      if (match === null) continue;
      const said = rule.onlyMatchingLine ? line : lines.join('; ');
      return `${quoted(said)} (${rule.hint(match, ctx, lines)})`;
    }
  }
  return undefined;
}

/**
 * A failure at a jump host: the first hop whose ssh said something is where the chain broke (a hop that could not
 * reach the next one says "open failed"; one that could not log in says why, as a server's login would).
 */
function explainJumpHostFailure(ctx: HintContext): string | undefined {
  const hops = ctx.jumpHosts ?? [];
  for (const [index, hop] of hops.entries()) {
    const lines = meaningfulLines(ctx.jumpHostLogs?.[index] ?? '');
    if (lines.length === 0) continue;
    const next = hops[index + 1] ?? `the server of ${ctx.remote}`;
    const forward = lines.find((l) => /^(channel \d+: open failed: |stdio forwarding failed$)/.test(l));
    if (forward !== undefined) {
      return (
        `mounting ${ctx.remote} failed: jump host ${hop} could not connect on to ${next}: ${quoted(forward)} (check ${next}'s host and ` +
        `port, and that ${hop} allows TCP forwarding to it)`
      );
    }
    return `mounting ${ctx.remote} failed at jump host ${hop}: ${explainLines(lines, ctx) ?? quoted(lines.join('; '))}`;
  }
  return undefined;
}

/**
 * Why sshfs could not mount: from ssh's log and sshfs's own stderr (sshfs 3.7 sends its ssh's stderr, where the
 * server's banner goes, to /dev/null).
 */
export function explainMountFailure(sshfs: RunResult, sshLog: string, ctx: HintContext): string {
  return explain('sshfs', sshfs, [...meaningfulLines(sshLog), ...meaningfulLines(sshfs.stderr)], ctx);
}

/**
 * Why the shared login's master (ssh run directly) could not log in: from its log only. Its stderr holds the server's
 * banner, which is the server's text: never a hint, never quoted.
 */
export function explainLoginFailure(ssh: RunResult, sshLog: string, ctx: HintContext): string {
  return explain('ssh', ssh, meaningfulLines(sshLog), ctx);
}

function explain(program: 'sshfs' | 'ssh', result: RunResult, lines: readonly string[], ctx: HintContext): string {
  const atJumpHost = explainJumpHostFailure(ctx);
  if (atJumpHost !== undefined) return atJumpHost;
  if (result.timedOut) {
    return (
      `${program} did not connect to ${ctx.remote} within ${ctx.timeoutSeconds} s; ` +
      'the server may be unreachable or not answering: check the host, -o port and firewalls'
    );
  }
  const explained = explainLines(lines, ctx);
  if (explained !== undefined) return `mounting ${ctx.remote} failed: ${explained}`;
  if (lines.length > 0) return `mounting ${ctx.remote} failed: ${quoted(lines.join('; '))}`;
  // ssh reports invalid options of its own before it opens its log, on a stderr sshfs does not pass on.
  const silent = ctx.algorithms !== undefined ? ` (ssh may have refused ${ctx.algorithms}: check the names with ssh -Q cipher / ssh -Q kex)` : '';
  return `mounting ${ctx.remote} failed: ${program} exited with status ${result.exitCode} and no message${silent}`;
}

/**
 * True for a private key that needs a passphrase: PEM with "Proc-Type: 4,ENCRYPTED", PKCS#8 "ENCRYPTED PRIVATE KEY",
 * or an OpenSSH key whose cipher name (after the "openssh-key-v1\0" magic) is not "none".
 */
export function isPassphraseProtected(keyText: string): boolean {
  if (/^Proc-Type: 4,ENCRYPTED/m.test(keyText) || /-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(keyText)) return true;
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(keyText)?.[1];
  if (body === undefined) return false;
  const bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (bytes.length < magic.length + 4 || bytes.toString('latin1', 0, magic.length) !== magic) return false;
  const length = bytes.readUInt32BE(magic.length);
  const start = magic.length + 4;
  return length > 0 && start + length <= bytes.length && bytes.toString('latin1', start, start + length) !== 'none';
}

/**
 * What the hints need to know about a volume whose mount failed. keyPath: the key file ssh was given (already checked
 * to lie in the keys directory or the state), read to tell an encrypted key.
 */
export async function failureContext(
  opts: VolumeOptions,
  keyPath: string | undefined,
  knownHostsFile: string,
  deps: Deps,
  jumpHostLogs: string[] = [],
): Promise<HintContext> {
  const keyText = keyPath !== undefined ? await deps.fs.readText(keyPath, 65_536) : '';
  const keyNeedsPassphrase = keyPath !== undefined && isPassphraseProtected(keyText);
  const keyIsRsa = keyPath !== undefined && isRsaKey(keyText);
  const algorithms = (['Ciphers', 'KexAlgorithms', 'HostKeyAlgorithms', 'PubkeyAcceptedAlgorithms'] as const)
    .filter((k) => opts.given[k] !== undefined)
    .map((k) => `-o ${k}=${opts.given[k]}`)
    .join(' ');
  // Read whole or not at all: a hint checks a line of it by number (the plugin's own file is small; a user's at most
  // MAX_KNOWN_HOSTS_BYTES, checked at Create and Mount).
  const info = await deps.fs.fileInfo(knownHostsFile);
  const knownHosts = info?.isFile === true && info.size <= KNOWN_HOSTS_READ_BYTES ? await deps.fs.readText(knownHostsFile, KNOWN_HOSTS_READ_BYTES) : undefined;
  return {
    remote: remoteText(opts.remote),
    ...(opts.remote.user !== undefined ? { user: opts.remote.user } : {}),
    knownHostsFile,
    ...(knownHosts !== undefined ? { knownHosts } : {}),
    hostKeyName: hostKeyName(opts),
    ...hostDirsOf(deps.config),
    timeoutSeconds: Math.round(deps.config.mountTimeoutMs / 1000),
    ...(keyNeedsPassphrase ? { keyNeedsPassphrase } : {}),
    ...(algorithms !== '' ? { algorithms } : {}),
    ...(keyIsRsa ? { keyIsRsa } : {}),
    ...(opts.jumpHosts !== undefined ? { jumpHosts: opts.jumpHosts.map(jumpHostText), jumpHostLogs } : {}),
  };
}

/** True for an RSA private key: PEM "RSA PRIVATE KEY", or an OpenSSH key whose public part is of type ssh-rsa. */
export function isRsaKey(keyText: string): boolean {
  if (/-----BEGIN RSA PRIVATE KEY-----/.test(keyText)) return true;
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(keyText)?.[1];
  if (body === undefined) return false;
  // openssh-key-v1\0, then cipher, kdf name, kdf options (strings), the key count, then the public key, whose first
  // string is its type: the type's name shows in the first few hundred bytes.
  return Buffer.from(body.replace(/\s+/g, ''), 'base64').subarray(0, 200).includes('\0\0\0\x07ssh-rsa');
}

/** How ssh names a server in known_hosts and in its messages: `host` on port 22, else `[host]:port` (no brackets of ours). */
export function hostKeyName(opts: VolumeOptions): string {
  const host = opts.remote.host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  const port = opts.port ?? 22;
  return port === 22 ? host : `[${host}]:${port}`;
}

const KNOWN_HOSTS_READ_BYTES = 1024 * 1024;

function hostDirsOf(config: Config): { hostDirs?: Record<string, string> } {
  return config.hostDirs !== undefined ? { hostDirs: config.hostDirs } : {};
}
