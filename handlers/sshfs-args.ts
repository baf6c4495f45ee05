// Builds the argv for sshfs. Values have been validated by options.ts; here they are only placed,
// one -o per option so none can merge into another.
import { remoteText, type VolumeOptions } from './options.js';

export interface MountPaths {
  mountpoint: string;
  /** known_hosts file in the state directory, used unless the user chose UserKnownHostsFile. */
  knownHostsFile: string;
  /** Where ssh writes its own messages (sshfs sends ssh's stderr to /dev/null once it daemonizes). */
  sshLogFile: string;
  /** Key file written from the `key` option. */
  keyFile?: string;
}

function sshOptions(opts: VolumeOptions, paths: MountPaths): string[] {
  const ssh: Record<string, string> = { UserKnownHostsFile: paths.knownHostsFile, ...opts.ssh };
  const identity = paths.keyFile ?? opts.identityFile;
  if (identity !== undefined) {
    ssh.IdentityFile = identity;
    ssh.IdentitiesOnly = 'yes';
  }
  if (opts.password === undefined) {
    // Without a password nobody can answer a prompt: fail fast instead of hanging the Mount.
    ssh.BatchMode = 'yes';
  } else {
    ssh.PreferredAuthentications = 'password,keyboard-interactive';
    ssh.NumberOfPasswordPrompts = '1';
  }
  return Object.entries(ssh).map(([k, v]) => `${k}=${escapeFuse(v)}`);
}

/** FUSE splits -o on commas; a backslash keeps one inside a value (e.g. a list of authentication methods). */
function escapeFuse(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

export function buildSshfsArgs(opts: VolumeOptions, paths: MountPaths): string[] {
  const args = [remoteText(opts.remote), paths.mountpoint];
  if (opts.port !== undefined) args.push('-p', String(opts.port));
  for (const [k, v] of Object.entries(opts.sshfs)) args.push('-o', v === '' ? k : `${k}=${v}`);
  if (opts.password !== undefined) args.push('-o', 'password_stdin');
  // Set by the plugin only (users cannot pass ssh_command): ssh itself, logging to the volume's own file.
  args.push('-o', `ssh_command=ssh -E ${paths.sshLogFile}`);
  for (const o of sshOptions(opts, paths)) args.push('-o', o);
  return args;
}
