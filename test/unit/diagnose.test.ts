// Error hints, from ssh's real output (OpenSSH 9.2, captured through sshfs 3.7.3's ssh log on this machine).
import { describe, expect, it } from 'vitest';
import { explainMountFailure, isPassphraseProtected, pathForUser, type HintContext } from '../../handlers/diagnose.js';
import type { RunResult } from '../../handlers/types.js';

const FAILED: RunResult = { exitCode: 1, stdout: '', stderr: 'read: Connection reset by peer\nread: Connection reset by peer', timedOut: false };
const CTX: HintContext = {
  remote: 'alice@127.0.0.1:/srv',
  user: 'alice',
  knownHostsFile: '/mnt/state/known_hosts',
  // Line 3 pins the server: the one "Offending ... known_hosts:3" names.
  knownHosts: 'a ssh-ed25519 AAAA\nb ssh-ed25519 AAAA\n[127.0.0.1]:51285 ssh-ed25519 AAAAold\n',
  hostKeyName: '[127.0.0.1]:51285',
  hostDirs: { '/mnt/state': '/var/lib/docker-volume-sshfs/state' },
  timeoutSeconds: 20,
};

const CHANGED_BANNER = `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:W7Q50sHuGYlL+X78kBOqZ21q2mT4AGjwanKwGbHhwTw.
Please contact your system administrator.
Add correct host key in /mnt/state/known_hosts to get rid of this message.
Offending ED25519 key in /mnt/state/known_hosts:3
  remove with:
  ssh-keygen -f "/mnt/state/known_hosts" -R "[127.0.0.1]:51285"
Host key for [127.0.0.1]:51285 has changed and you have requested strict checking.
Host key verification failed.
`;

const explain = (sshLog: string, ctx: Partial<HintContext> = {}, result: RunResult = FAILED) =>
  explainMountFailure(result, sshLog, { ...CTX, ...ctx });

describe('explainMountFailure', () => {
  it('a changed host key: one line naming the host, the pinned line, and the fix on the Docker host', () => {
    const message = explain(CHANGED_BANNER);
    expect(message.split('\n')).toHaveLength(1);
    expect(message).not.toMatch(/@@@|NASTY|eavesdropping/);
    expect(message).toBe(
      'mounting alice@127.0.0.1:/srv failed: Host key for [127.0.0.1]:51285 has changed and you have requested strict checking. ' +
        '(the host key of [127.0.0.1]:51285 is not the one pinned in /var/lib/docker-volume-sshfs/state/known_hosts (line 3): ' +
        "if the server was reinstalled or its key replaced, run on the Docker host ssh-keygen -R '[127.0.0.1]:51285' " +
        '-f /var/lib/docker-volume-sshfs/state/known_hosts and mount again; if not, someone may be intercepting the connection)',
    );
  });

  it('a changed host key in host mode names the file where it is', () => {
    const message = explain(CHANGED_BANNER.replaceAll('/mnt/state', '/var/lib/sshfs-state'), { hostDirs: {}, knownHostsFile: '/var/lib/sshfs-state/known_hosts' });
    expect(message).toContain("run ssh-keygen -R '[127.0.0.1]:51285' -f /var/lib/sshfs-state/known_hosts and mount again");
    expect(message).not.toContain('Docker host');
  });

  it('an unknown host with StrictHostKeyChecking=yes is not called a mismatch', () => {
    const message = explain(
      'No ED25519 host key is known for [127.0.0.1]:51285 and you have requested strict checking.\nHost key verification failed.\n',
      { knownHostsFile: '/keys/known_hosts' },
    );
    expect(message).toMatch(/^mounting .* failed: No ED25519 host key is known for \[127.0.0.1\]:51285 and you have requested strict checking\. \(/);
    expect(message).toContain('StrictHostKeyChecking=yes connects only to servers already listed in /keys/known_hosts');
    expect(message).not.toMatch(/changed|reinstalled|ssh-keygen -R/);
  });

  it('a key exchange mismatch points at KexAlgorithms, a cipher mismatch at Ciphers, keeping the server offer', () => {
    const kex = explain(
      'Unable to negotiate with 127.0.0.1 port 51285: no matching key exchange method found. Their offer: curve25519-sha256,ecdh-sha2-nistp256\n',
    );
    expect(kex).toContain('Their offer: curve25519-sha256,ecdh-sha2-nistp256');
    expect(kex).toMatch(/-o KexAlgorithms/);
    expect(kex).not.toMatch(/Ciphers/);
    const cipher = explain('Unable to negotiate with 127.0.0.1 port 51285: no matching cipher found. Their offer: aes128-ctr\n');
    expect(cipher).toMatch(/-o Ciphers/);
    expect(cipher).not.toMatch(/KexAlgorithms/);
  });

  it('ssh silent under sshfs: names the algorithm options the user gave', () => {
    const silent = { ...FAILED, stderr: '' };
    expect(explain('', {}, silent)).toBe('mounting alice@127.0.0.1:/srv failed: sshfs exited with status 1 and no message');
    expect(explain('', { algorithms: '-o Ciphers=aes999' }, silent)).toMatch(/no message \(ssh may have refused -o Ciphers=aes999: check the names with ssh -Q cipher/);
    expect(explain("command-line line 0: Bad SSH2 cipher spec 'aes999'.")).toMatch(/Bad SSH2 cipher spec 'aes999'\. \(ssh does not know that name/);
  });

  it('tells a passphrase-protected key and a login as root from a plain refusal', () => {
    const denied = 'alice@127.0.0.1: Permission denied (publickey,password).\n';
    expect(explain(denied)).toMatch(/Permission denied \(publickey,password\)\. \(the server refused the login: check the user/);
    expect(explain(denied, { keyNeedsPassphrase: true })).toMatch(/protected by a passphrase, which the plugin cannot type/);
    const root = explain('root@127.0.0.1: Permission denied (publickey).\n', { user: undefined });
    expect(root).toMatch(/root@127\.0\.0\.1: Permission denied.*sshcmd names no user, so ssh logged in as root/);
  });
});

describe('pathForUser', () => {
  it('maps paths under a bind-mounted directory to the host, others stay', () => {
    const dirs = { '/mnt/state': '/srv/sshfs-state' };
    expect(pathForUser('/mnt/state/known_hosts', dirs)).toEqual({ path: '/srv/sshfs-state/known_hosts', onHost: true });
    expect(pathForUser('/mnt/statefile', dirs)).toEqual({ path: '/mnt/statefile', onHost: false });
    expect(pathForUser('/keys/known_hosts')).toEqual({ path: '/keys/known_hosts', onHost: false });
  });
});

describe('isPassphraseProtected', () => {
  // The header of an OpenSSH key: magic, then the cipher name ("none" or e.g. "aes256-ctr").
  const openssh = (cipher: string) => {
    const name = Buffer.from(cipher);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(name.length);
    const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), len, name, Buffer.alloc(40, 7)]).toString('base64');
    return `-----BEGIN OPENSSH PRIVATE KEY-----\n${body}\n-----END OPENSSH PRIVATE KEY-----\n`;
  };
  it('reads the cipher of an OpenSSH key, and PEM/PKCS#8 markers', () => {
    expect(isPassphraseProtected(openssh('none'))).toBe(false);
    expect(isPassphraseProtected(openssh('aes256-ctr'))).toBe(true);
    expect(isPassphraseProtected('-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nxx\n-----END RSA PRIVATE KEY-----\n')).toBe(true);
    expect(isPassphraseProtected('-----BEGIN ENCRYPTED PRIVATE KEY-----\nxx\n-----END ENCRYPTED PRIVATE KEY-----\n')).toBe(true);
    expect(isPassphraseProtected('-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n')).toBe(false);
    expect(isPassphraseProtected('')).toBe(false);
    expect(isPassphraseProtected('-----BEGIN OPENSSH PRIVATE KEY-----\n!!\n-----END OPENSSH PRIVATE KEY-----')).toBe(false);
  });
});

describe('explainMountFailure: ConnectTimeout', () => {
  it('a server that accepts but never greets is told apart from an unreachable one', () => {
    expect(explain('Connection timed out during banner exchange\nConnection to 127.0.0.1 port 2222 timed out\n')).toMatch(
      /banner exchange.*sent no SSH greeting within ConnectTimeout/,
    );
    expect(explain('ssh: connect to host 10.0.0.1 port 22: Connection timed out\n')).toMatch(/could not be reached/);
  });
});
