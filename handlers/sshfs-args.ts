// A Mount's plan (the volume's options, its login and its files, decided once) and the argv it gives sshfs, a shared
// login's master and each jump host. Values have been validated by options.ts; here they are only placed, one -o per
// option so none can merge into another.
import type { Login } from './credentials.js';
import { bareHost, remoteText, type VolumeOptions } from './options.js';

export interface MountPaths {
  mountpoint: string;
  /** The known_hosts file ssh checks: the plugin's own in the state directory, or the user's (then only read). */
  knownHostsFile: string;
  /** Where ssh writes its own messages (`ssh -E`), and where sshfs's own output goes (the runner appends it there). */
  sshLogFile: string;
}

/**
 * The ssh command sshfs runs, set by the plugin only (users cannot pass ssh_command). `-F none`: no ssh_config of the
 * host or of root applies, so nothing there (a ProxyCommand, an IdentityFile, an agent) reaches a volume.
 */
function sshCommand(sshLogFile: string): string {
  return `ssh -E ${sshLogFile} -F none`;
}

/** What one Mount starts sshfs (and ssh) with: built once, then every argv comes from it. */
export interface MountPlan {
  opts: VolumeOptions;
  login: Login;
  paths: MountPaths;
  /** The login's ssh options, unescaped: sshfs passes them on; a shared login's master and every jump host use them too. */
  sshOptions: ReadonlyArray<readonly [string, string]>;
}

export function mountPlan(opts: VolumeOptions, login: Login, paths: MountPaths): MountPlan {
  return { opts, login, paths, sshOptions: sshOptionEntries(opts, paths, login) };
}

function sshOptionEntries(opts: VolumeOptions, paths: MountPaths, login: Login): Array<[string, string]> {
  const ssh: Record<string, string> = {
    UserKnownHostsFile: paths.knownHostsFile,
    // Host keys come from that one file only; ssh must never rewrite it (UpdateHostKeys) or read the host's own.
    GlobalKnownHostsFile: '/dev/null',
    UpdateHostKeys: 'no',
    // Only the credential the volume was given: no agent, no key from root's ~/.ssh.
    IdentityAgent: 'none',
    IdentitiesOnly: 'yes',
    ...opts.ssh,
  };
  if ('keyFile' in login) {
    ssh.IdentityFile = login.keyFile;
    if (login.certificateFile !== undefined) ssh.CertificateFile = login.certificateFile;
    ssh.PasswordAuthentication = 'no';
    ssh.KbdInteractiveAuthentication = 'no';
    // Without a password nobody can answer a prompt: fail fast instead of hanging the Mount.
    ssh.BatchMode = 'yes';
  } else {
    ssh.IdentityFile = 'none';
    ssh.PubkeyAuthentication = 'no';
    ssh.PreferredAuthentications = 'password,keyboard-interactive';
    ssh.NumberOfPasswordPrompts = '1';
  }
  return Object.entries(ssh);
}

/** Where the ssh of jump host `index` (0: the first hop) writes its messages: beside the log of the ssh it serves. */
export function jumpHostLogFile(logFile: string, index: number): string {
  return `${logFile}.hop${index}`;
}

/** One word for /bin/sh, whatever it holds: single-quoted, a quote inside written as '\''. */
function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** ssh expands %-tokens in a ProxyCommand before the shell runs it: literal text keeps its % by doubling it. */
const literalPercent = (text: string) => text.replace(/%/g, '%%');

/**
 * The ProxyCommand that reaches the server through the volume's jump hosts, or undefined without any. ssh's own
 * ProxyJump cannot be used: the ssh it starts for a hop gets none of the volume's -o options (key, known_hosts, host
 * key policy: it would use root's ~/.ssh), so the plugin builds the chain itself. Each hop is
 * `ssh -E <log> -F none -p PORT -l USER -o <the volume's ssh options> [-o ProxyCommand=<the hops before>] -W [%h]:%p -- HOST`:
 * the same key, known_hosts file and host key policy as the server's login. ssh runs a ProxyCommand with /bin/sh, so
 * every word is single-quoted (and its % doubled) here: no value, however written, can become shell syntax; the
 * values come from options.ts, which allows only names, numbers and paths there anyway.
 */
export function proxyCommand(plan: MountPlan, logFile: string): string | undefined {
  let command: string | undefined;
  for (const [index, hop] of (plan.opts.jumpHosts ?? []).entries()) {
    const argv = ['-E', jumpHostLogFile(logFile, index), '-F', 'none'];
    if (hop.port !== undefined) argv.push('-p', String(hop.port));
    if (hop.user !== undefined) argv.push('-l', hop.user);
    for (const [k, v] of plan.sshOptions) argv.push('-o', `${k}=${v}`);
    // The hops before this one, run by this hop's own ssh (which expands their %h to this hop's host).
    if (command !== undefined) argv.push('-o', `ProxyCommand=${command}`);
    argv.push('-W');
    const words = argv.map((w) => (w.startsWith('-') && /^[A-Za-z-]+$/.test(w) ? w : shellWord(literalPercent(w))));
    command = ['ssh', ...words, "'[%h]:%p'", '--', shellWord(literalPercent(bareHost(hop.host)))].join(' ');
  }
  return command;
}

/** FUSE splits -o on commas; a backslash keeps one inside a value (e.g. a list of authentication methods). */
function escapeFuse(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

/**
 * controlPath: the shared connection to use (shared-ssh.ts). ControlMaster=no: sshfs's ssh only ever joins the
 * plugin's master; when that is gone, ssh finds no socket and logs in by itself, as without sharing.
 */
export function buildSshfsArgs(plan: MountPlan, controlPath?: string): string[] {
  const { opts, paths, login } = plan;
  // -f: sshfs stays the plugin's own child (no daemon to look for), its pid known from the start.
  const args = [remoteText(opts.remote), paths.mountpoint, '-f'];
  if (opts.port !== undefined) args.push('-p', String(opts.port));
  for (const [k, v] of Object.entries(opts.sshfs)) args.push('-o', v === '' ? k : `${k}=${v}`);
  if ('password' in login) args.push('-o', 'password_stdin');
  args.push('-o', `ssh_command=${sshCommand(paths.sshLogFile)}`);
  for (const [k, v] of plan.sshOptions) args.push('-o', `${k}=${escapeFuse(v)}`);
  const proxy = proxyCommand(plan, paths.sshLogFile);
  if (proxy !== undefined) args.push('-o', `ProxyCommand=${escapeFuse(proxy)}`);
  if (controlPath !== undefined) args.push('-o', `ControlPath=${controlPath}`, '-o', 'ControlMaster=no');
  return args;
}
