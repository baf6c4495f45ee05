// Parses and validates `docker volume create -o` options. Every key is checked against an allow-list and every
// value against a strict pattern, so no option can make sshfs or ssh run another program or smuggle in a
// further option (FUSE splits -o values on commas; ssh treats a leading '-' as a flag).
import { UserError } from './errors.js';

type Target = 'plugin' | 'sshfs' | 'ssh';

/** What parsing needs to know of the plugin's settings. */
export interface ParseContext {
  /** The directory the operator chose for key files (KEYS_DIR; /keys in the managed plugin). */
  keysDir: string;
}

interface OptionSpec {
  target: Target;
  /** Validates the raw value and returns the value to pass on (flags return '' when set, undefined when unset). */
  parse: (value: string, key: string, context: ParseContext) => string | undefined;
  /** The value is a credential itself: never shown (Status leaves it out). */
  secret?: true;
  /** Says how the volume logs in: a volume gives at most one such option (none: the operator's default key). */
  credential?: true;
  /** What the plugin uses when the option is not given (its own numeric settings). */
  default?: number;
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const KEYS_DIR_NAME = /^[A-Za-z0-9._@+-][A-Za-z0-9._@+/-]{0,254}$/;
const TOKEN = /^[A-Za-z0-9@._+-]+$/;

function flag(value: string, key: string): string | undefined {
  const v = value.trim().toLowerCase();
  if (v === '' || v === 'true' || v === 'yes' || v === '1' || v === 'on') return '';
  if (v === 'false' || v === 'no' || v === '0' || v === 'off') return undefined;
  throw new UserError(`option ${key} is a flag: give it no value, or true/false (also yes/no, on/off, 1/0)`);
}

function integer(min: number, max: number) {
  return (value: string, key: string): string => {
    if (!/^[0-9]{1,10}$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new UserError(`option ${key} must be a whole number from ${min} to ${max}, not "${printable(value)}"`);
    }
    return String(Number(value));
  };
}

function oneOf(...allowed: string[]) {
  return (value: string, key: string): string => {
    const v = value.trim().toLowerCase();
    if (!allowed.includes(v)) {
      throw new UserError(`option ${key} must be one of ${allowed.join(', ')}, not "${printable(value)}"`);
    }
    return v;
  };
}

/**
 * A file the operator placed in the keys directory: a name inside it (`id_ed25519`, `sub/key`) or the same as an
 * absolute path under it (`/keys/id_ed25519`). Only the spelling is checked here; whether it is a regular file that
 * really lies inside the directory (symlinks resolved) is checked against the filesystem at Create and at every Mount.
 */
function keysDirPath(value: string, key: string, { keysDir }: ParseContext): string {
  {
    const inside = value.startsWith(`${keysDir}/`) ? value.slice(keysDir.length + 1) : value;
    if (!KEYS_DIR_NAME.test(inside) || inside.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new UserError(
        `option ${key} must name a file in the plugin's keys directory ${keysDir}, as a file name (e.g. id_ed25519) or as ` +
          `${keysDir}/<file> (letters, digits and . _ @ + - /, no ..), not "${printable(value)}"`,
      );
    }
    return `${keysDir}/${inside}`;
  }
}

function token(value: string, key: string): string {
  if (!TOKEN.test(value)) {
    throw new UserError(`option ${key} takes a single name of letters, digits and @ . _ + - (no commas), not "${printable(value)}"`);
  }
  return value;
}

/**
 * A cipher or key-exchange name. ssh reads a leading ^ as "put it first in the default list" (the plugin's default
 * does), + as "add it to the list" and - as "remove it from the list"; the name is checked against ssh at Create.
 */
function cipher(value: string, key: string): string {
  const prefix = /^[\^+-]/.test(value) ? value.slice(0, 1) : '';
  const name = value.slice(prefix.length);
  if (!/^[A-Za-z0-9]/.test(name)) {
    throw new UserError(`option ${key} takes a single name of letters, digits and @ . _ + - (no commas), not "${printable(value)}"`);
  }
  return prefix + token(name, key);
}

/**
 * `mode`: the permission bits every file and directory shows. FUSE has no mask of the server's modes: its `umask`
 * replaces every mode with 0777 minus the mask, so the plugin names the option after what it does and passes the
 * equivalent umask.
 */
function mode(value: string, key: string): string {
  if (!/^0?[0-7]{3}$/.test(value)) {
    throw new UserError(`option ${key} must be octal permission bits such as 755 or 750, not "${printable(value)}"`);
  }
  return (0o777 & ~parseInt(value, 8)).toString(8).padStart(3, '0');
}

/**
 * Options other sshfs plugins take that would not do here what their name says: refused with what to use instead.
 * A Map, as every lookup by a user's option name: names such as "constructor" or "__proto__" must find nothing.
 */
const REFUSED_WITH_REASON = new Map<string, string>([
  [
    'umask',
    "option umask is not supported: FUSE's umask does not mask the server's modes, it replaces every mode with 0777 " +
      'minus the mask (a 0640 file shows as 0755 with umask=022); to show one mode for every file and directory, use ' +
      '-o mode=755 (what umask=022 does), or leave it out to see the modes the server has',
  ],
]);

/** Shows a value in an error without control characters (which could forge log lines). */
export function printable(value: string): string {
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 80)}...` : clean;
}

const UID = integer(0, 4_294_967_294);

/**
 * The allow-list. Keys are matched case-insensitively and stored in this spelling. What each option means is the
 * README's options table (test/unit/readme.test.ts keeps the two in step).
 */
/**
 * A container blocked on a stalled server gets an error after this long instead of waiting for good (and `docker rm
 * -f` of it works again): a minute is past any pause a working server makes, and far below "hung".
 */
const DEFAULT_STALL_TIMEOUT_S = 60;

// The kernel gives a FUSE mount 128 KiB of read-ahead: one SFTP round trip's worth of data in flight at a time.
// 1024 KiB keeps enough reads in flight to speed up sequential reads over sshfs (`npm run bench`, bench-results.md).
export const DEFAULT_READ_AHEAD_KB = 1024;

export const OPTION_SPECS = {
  sshcmd: { target: 'plugin', parse: (v) => v },
  port: { target: 'plugin', parse: integer(1, 65535) },
  password: { target: 'plugin', parse: (v) => v, secret: true, credential: true },
  password_file: { target: 'plugin', parse: keysDirPath, credential: true },
  IdentityFile: { target: 'plugin', parse: keysDirPath, credential: true },
  key: { target: 'plugin', parse: (v) => v, secret: true, credential: true },
  // Opt-in: an idle mount keeps a login (and the server's resources) until then.
  unmount_delay: { target: 'plugin', parse: integer(0, 86_400), default: 0 },
  read_ahead_kb: { target: 'plugin', parse: integer(0, 65_536), default: DEFAULT_READ_AHEAD_KB },
  stall_timeout: { target: 'plugin', parse: integer(0, 86_400), default: DEFAULT_STALL_TIMEOUT_S },
  // sshfs and FUSE options
  allow_other: { target: 'sshfs', parse: flag },
  default_permissions: { target: 'sshfs', parse: flag },
  uid: { target: 'sshfs', parse: UID },
  gid: { target: 'sshfs', parse: UID },
  mode: { target: 'sshfs', parse: mode },
  ro: { target: 'sshfs', parse: flag },
  reconnect: { target: 'sshfs', parse: flag },
  idmap: { target: 'sshfs', parse: oneOf('none', 'user') },
  follow_symlinks: { target: 'sshfs', parse: flag },
  transform_symlinks: { target: 'sshfs', parse: flag },
  contain_symlinks: { target: 'sshfs', parse: flag },
  cache: { target: 'sshfs', parse: oneOf('yes', 'no') },
  dir_cache: { target: 'sshfs', parse: oneOf('yes', 'no') },
  cache_timeout: { target: 'sshfs', parse: integer(0, 86_400) },
  kernel_cache: { target: 'sshfs', parse: flag },
  max_conns: { target: 'sshfs', parse: integer(1, 32) },
  // ssh options, passed as -o Name=Value
  ServerAliveInterval: { target: 'ssh', parse: integer(0, 3600) },
  ServerAliveCountMax: { target: 'ssh', parse: integer(1, 100) },
  ConnectTimeout: { target: 'ssh', parse: integer(1, 60) },
  Compression: { target: 'ssh', parse: oneOf('yes', 'no') },
  Ciphers: { target: 'ssh', parse: cipher },
  KexAlgorithms: { target: 'ssh', parse: cipher },
  GSSAPIAuthentication: { target: 'ssh', parse: oneOf('yes', 'no') },
  StrictHostKeyChecking: { target: 'ssh', parse: oneOf('yes', 'accept-new') },
  UserKnownHostsFile: { target: 'plugin', parse: keysDirPath },
  // Legacy algorithms (old NAS firmware): opt-in only, e.g. +ssh-rsa; names checked with `ssh -G` at Create.
  HostKeyAlgorithms: { target: 'ssh', parse: cipher },
  PubkeyAcceptedAlgorithms: { target: 'ssh', parse: cipher },
  CertificateFile: { target: 'plugin', parse: keysDirPath },
  ProxyJump: { target: 'plugin', parse: (v) => v },
} satisfies Record<string, OptionSpec>;

// Lookups by name go through Maps only: OPTION_SPECS is a plain object, whose inherited names (constructor,
// __proto__, toString...) a user's option name must never reach.
const CANONICAL = new Map(Object.keys(OPTION_SPECS).map((k) => [k.toLowerCase(), k]));
const SPECS = new Map<string, OptionSpec>(Object.entries(OPTION_SPECS));

/** The option a user's spelling names (option names are case-insensitive), or undefined for none. */
export function optionNamed(rawKey: string): string | undefined {
  return CANONICAL.get(rawKey.toLowerCase());
}

/** Whether an option's value is a credential itself, never to be shown. */
export function isSecretOption(key: string): boolean {
  return SPECS.get(key)?.secret === true;
}

/** The options that say how a volume logs in; at most one may be given (none: the operator's default key). */
const CREDENTIAL_OPTIONS: readonly string[] = [...SPECS].flatMap(([key, spec]) => (spec.credential === true ? [key] : []));

export function allowedOptionsText(): string {
  return Object.keys(OPTION_SPECS).join(', ');
}

export interface Remote {
  user?: string;
  host: string;
  path: string;
}

/** A jump host of -o ProxyJump, validated like sshcmd's login (host as written: an IPv6 address keeps its brackets). */
export interface JumpHost {
  user?: string;
  host: string;
  port?: number;
}

/** The longest ProxyJump chain accepted. */
export const MAX_JUMP_HOSTS = 3;

/** A volume's validated options, split by who consumes them. */
export interface VolumeOptions {
  remote: Remote;
  port?: number;
  password?: string;
  /** Absolute path of the password file in the keys directory (checked and read at Mount). */
  passwordFile?: string;
  /** Absolute path of the key file in the keys directory (checked at Create and at every Mount). */
  identityFile?: string;
  /** The user's known_hosts file in the keys directory: only read, host keys must be in it. */
  knownHostsFile?: string;
  /** A certificate for the key (CertificateFile), in the keys directory, checked at Create and at every Mount. */
  certificateFile?: string;
  /** Jump hosts, in the order they are passed through (-o ProxyJump). */
  jumpHosts?: JumpHost[];
  /** Private key text, normalized to OpenSSH/PEM with a trailing newline. */
  key?: string;
  /** sshfs/FUSE options as name -> value ('' for a flag), after defaults. */
  sshfs: Record<string, string>;
  /** ssh options as Name -> value, after defaults. */
  ssh: Record<string, string>;
  /** Seconds the mount outlives its last container (0: unmount at once). */
  unmountDelaySeconds: number;
  /** Kernel read-ahead to set on the mount, in KiB. */
  readAheadKb: number;
  /** Seconds requests may wait on a server that sends nothing before the mount is aborted (stall-watch.ts); 0: never. */
  stallTimeoutSeconds: number;
  /** The options as given, with canonical key spelling (for comparing re-creates). */
  given: Record<string, string>;
}

const USER = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/;
const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;

export function parseSshcmd(value: string): Remote {
  if (CONTROL_CHARS.test(value)) throw new UserError('sshcmd must not contain control characters or newlines');
  // An IPv6 address in brackets has colons of its own: look for the path's colon after the bracket.
  const bracketed = value.startsWith('[') || value.includes('@[');
  const colon = value.indexOf(':', bracketed ? Math.max(0, value.indexOf(']')) : 0);
  const example = 'write it as [user@]host:[path], e.g. -o sshcmd=alice@files.example.com:/srv/data';
  if (colon < 0) throw new UserError(`sshcmd "${printable(value)}" has no ':' before the path; ${example}`);
  const login = value.slice(0, colon);
  const path = value.slice(colon + 1);
  const at = login.lastIndexOf('@');
  const user = at >= 0 ? login.slice(0, at) : undefined;
  const host = at >= 0 ? login.slice(at + 1) : login;
  if (user !== undefined && !USER.test(user)) {
    throw new UserError(`sshcmd user "${printable(user)}" is not a valid user name (letters, digits, . _ -, not starting with -); ${example}`);
  }
  if (!HOSTNAME.test(host) && !IPV6.test(host)) {
    throw new UserError(`sshcmd host "${printable(host)}" is not a valid host name or address (it may not start with -); ${example}`);
  }
  return { ...(user !== undefined ? { user } : {}), host, path };
}

/** The host as ssh takes it on its command line: an IPv6 address without its brackets (sshfs strips them itself). */
export function bareHost(host: string): string {
  return IPV6.test(host) ? host.slice(1, -1) : host;
}

/**
 * -o ProxyJump=[user@]host[:port][,...]: at most MAX_JUMP_HOSTS hops, each validated like sshcmd's login, so no hop
 * can carry an ssh option, a command or an ssh:// URI.
 */
export function parseProxyJump(value: string): JumpHost[] {
  const example = 'write it as [user@]host[:port], several separated by commas, e.g. -o ProxyJump=alice@bastion.example.com:2222';
  if (CONTROL_CHARS.test(value) || value.trim() === '') throw new UserError(`option ProxyJump is empty or has control characters; ${example}`);
  const hops = value.split(',');
  if (hops.length > MAX_JUMP_HOSTS) throw new UserError(`option ProxyJump names ${hops.length} jump hosts; at most ${MAX_JUMP_HOSTS} are allowed`);
  return hops.map((hop) => {
    const at = hop.lastIndexOf('@');
    const user = at >= 0 ? hop.slice(0, at) : undefined;
    const rest = at >= 0 ? hop.slice(at + 1) : hop;
    const bracket = rest.startsWith('[') ? rest.indexOf(']') : -1;
    const colon = rest.indexOf(':', bracket >= 0 ? bracket : 0);
    const host = colon >= 0 ? rest.slice(0, colon) : rest;
    const portText = colon >= 0 ? rest.slice(colon + 1) : undefined;
    if (user !== undefined && !USER.test(user)) {
      throw new UserError(`ProxyJump user "${printable(user)}" is not a valid user name (letters, digits, . _ -, not starting with -); ${example}`);
    }
    if (!HOSTNAME.test(host) && !IPV6.test(host)) {
      throw new UserError(`ProxyJump host "${printable(host)}" is not a valid host name or address (no ssh:// forms, not starting with -); ${example}`);
    }
    if (portText !== undefined && (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)) {
      throw new UserError(`ProxyJump port "${printable(portText)}" of ${printable(host)} must be a number from 1 to 65535; ${example}`);
    }
    return { ...(user !== undefined ? { user } : {}), host, ...(portText !== undefined ? { port: Number(portText) } : {}) };
  });
}

/** A jump host as users write it, for messages and Status. */
export function jumpHostText(hop: JumpHost): string {
  return `${hop.user !== undefined ? `${hop.user}@` : ''}${hop.host}${hop.port !== undefined ? `:${hop.port}` : ''}`;
}

export function remoteText(remote: Remote): string {
  return `${remote.user !== undefined ? `${remote.user}@` : ''}${remote.host}:${remote.path}`;
}

const PRIVATE_KEY = /^-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----\r?\n[\s\S]+\n-----END ([A-Z0-9 ]+ )?PRIVATE KEY-----\s*$/;

export function normalizeKey(value: string): string {
  const text = value.trim();
  if (PRIVATE_KEY.test(`${text}\n`)) return `${text.replace(/\r\n/g, '\n')}\n`;
  const compact = text.replace(/\s+/g, '');
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) {
    const decoded = Buffer.from(compact, 'base64').toString('utf8').trim();
    if (PRIVATE_KEY.test(`${decoded}\n`)) return `${decoded.replace(/\r\n/g, '\n')}\n`;
  }
  throw new UserError(
    'option key must be a private key: the text of the file, starting with -----BEGIN ... PRIVATE KEY----- ' +
      '(e.g. -o key="$(cat ~/.ssh/id_ed25519)"), or that text base64-encoded',
  );
}

/** Defaults users of other sshfs plugins asked for: survive drops, notice dead links, never hang a Mount. */
// idmap=user shows the ssh user's files as root's, so Docker's chown to root (copy-up, docker cp) succeeds.
export const DEFAULT_SSHFS: Record<string, string> = { reconnect: '', allow_other: '', idmap: 'user' };
// Chosen from `npm run bench` (figures in bench-results.md): aes128-gcm (AES-NI) moves data through sshfs faster than
// ssh's default chacha20-poly1305; the ^ only puts it first, so servers without it still negotiate another cipher.
// Compression=no: random or already-compressed data only gets slower, whatever ssh_config on the host says.
// Not defaults (no gain or a loss in the sweep): max_conns (slower small files), kernel_cache, larger max_read/max_write.
export const DEFAULT_SSH: Record<string, string> = {
  ServerAliveInterval: '15',
  ServerAliveCountMax: '3',
  ConnectTimeout: '10',
  StrictHostKeyChecking: 'accept-new',
  Ciphers: '^aes128-gcm@openssh.com',
  Compression: 'no',
  // Distributions' ssh_config often turns GSSAPI on; the plugin never has a Kerberos ticket, and against servers that
  // offer it the attempt (with its DNS lookups) only delays the login.
  GSSAPIAuthentication: 'no',
};
// Kept at ssh's default on purpose: OpenSSH 9.x negotiates a post-quantum hybrid key exchange (sntrup761x25519), which
// makes each connect slower (bench-results.md); -o KexAlgorithms=^curve25519-sha256 trades that protection for speed.

/** The managed plugin's keys directory, which is also KEYS_DIR's default. */
export const DEFAULT_KEYS_DIR = '/keys';

export function parseOptions(opts: Record<string, string>, context: ParseContext = { keysDir: DEFAULT_KEYS_DIR }): VolumeOptions {
  const given: Record<string, string> = {};
  for (const [rawKey, value] of Object.entries(opts)) {
    const key = optionNamed(rawKey);
    if (key === undefined) {
      const reason = REFUSED_WITH_REASON.get(rawKey.toLowerCase());
      if (reason !== undefined) throw new UserError(reason);
      throw new UserError(`option "${printable(rawKey)}" is not supported; the options are: ${allowedOptionsText()}`);
    }
    if (key in given) throw new UserError(`option ${key} is given twice`);
    if (key !== 'key' && CONTROL_CHARS.test(value)) {
      throw new UserError(`option ${key} must not contain control characters or newlines`);
    }
    if (value.length > 16_384) throw new UserError(`option ${key} is too long`);
    given[key] = value;
  }
  if (given.sshcmd === undefined || given.sshcmd === '') {
    throw new UserError('option sshcmd is required: -o sshcmd=user@host:/path (docker volume create -d <plugin> -o sshcmd=... NAME)');
  }
  const auth = CREDENTIAL_OPTIONS.filter((k) => given[k] !== undefined);
  if (auth.length > 1) throw new UserError(`give only one of ${CREDENTIAL_OPTIONS.join(', ')} (got ${auth.join(' and ')})`);
  const byPassword = given.password !== undefined ? 'password' : given.password_file !== undefined ? 'password_file' : undefined;
  for (const keyOnly of ['CertificateFile', 'ProxyJump'] as const) {
    if (given[keyOnly] !== undefined && byPassword !== undefined) {
      throw new UserError(
        `${keyOnly} works only with a key login (-o IdentityFile, -o key or the default key), not with ${byPassword}: ` +
          (keyOnly === 'ProxyJump' ? 'every jump host logs in with the same key as the server' : 'a certificate signs a key'),
      );
    }
  }
  if (given.cache !== undefined && given.dir_cache !== undefined && given.cache.trim().toLowerCase() !== given.dir_cache.trim().toLowerCase()) {
    throw new UserError(
      `cache and dir_cache are two names for one sshfs setting, and they disagree (cache=${printable(given.cache)}, ` +
        `dir_cache=${printable(given.dir_cache)}): give only one of them`,
    );
  }
  if (given.UserKnownHostsFile !== undefined && given.StrictHostKeyChecking?.trim().toLowerCase() === 'accept-new') {
    throw new UserError(
      'UserKnownHostsFile is only read, never written, so it cannot pin new keys: leave out StrictHostKeyChecking=accept-new ' +
        '(with UserKnownHostsFile the host key must already be in that file), or leave out UserKnownHostsFile to pin on first use',
    );
  }

  const result: VolumeOptions = {
    remote: parseSshcmd(given.sshcmd),
    sshfs: { ...DEFAULT_SSHFS },
    ssh: { ...DEFAULT_SSH },
    readAheadKb: OPTION_SPECS.read_ahead_kb.default,
    unmountDelaySeconds: OPTION_SPECS.unmount_delay.default,
    stallTimeoutSeconds: OPTION_SPECS.stall_timeout.default,
    given,
  };
  for (const [key, value] of Object.entries(given)) {
    const spec = SPECS.get(key);
    if (spec === undefined) continue;
    const parsed = spec.parse(value, key, context);
    switch (key) {
      case 'port':
        result.port = Number(parsed);
        break;
      case 'password':
        if (value === '') throw new UserError('option password is empty; give the password or use a key');
        result.password = value;
        break;
      case 'IdentityFile':
        result.identityFile = parsed;
        break;
      case 'password_file':
        result.passwordFile = parsed;
        break;
      case 'CertificateFile':
        result.certificateFile = parsed;
        break;
      case 'ProxyJump':
        result.jumpHosts = parseProxyJump(value);
        break;
      case 'UserKnownHostsFile':
        result.knownHostsFile = parsed;
        result.ssh.StrictHostKeyChecking = 'yes';
        break;
      case 'key':
        result.key = normalizeKey(value);
        break;
      case 'read_ahead_kb':
        result.readAheadKb = Number(parsed);
        break;
      case 'unmount_delay':
        result.unmountDelaySeconds = Number(parsed);
        break;
      case 'stall_timeout':
        result.stallTimeoutSeconds = Number(parsed);
        break;
      case 'mode':
        if (parsed !== undefined) result.sshfs.umask = parsed;
        break;
      case 'contain_symlinks':
        // On is sshfs's own default (Debian's 3.7.3 security update): passed only to turn it off.
        if (parsed === undefined) result.sshfs.no_contain_symlinks = '';
        break;
      default:
        if (spec.target === 'plugin') break;
        {
          const bag = spec.target === 'sshfs' ? result.sshfs : result.ssh;
          if (parsed === undefined) delete bag[key];
          else bag[key] = parsed;
        }
    }
  }
  return result;
}
