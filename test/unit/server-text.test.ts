// Issue 19 items 4 and 5: what a server says is data, never advice, and never more than a few KB. A server's banner
// (ssh prints it on its stderr: the shared login's master hands that to the plugin) and its disconnect reason (one line
// of ssh's log, after ssh's own words) must not make a hint, and whatever is quoted is cut with a marker.
import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { explainLoginFailure, explainMountFailure, knownHostsLineHolds, lastSshMessage, MAX_QUOTED_CHARS, quoted, type HintContext } from '../../handlers/diagnose.js';
import { create, get, mount } from '../../adapter/docker/routes.js';
import type { RunResult } from '../../handlers/types.js';
import { makeDeps } from './fixtures.js';

const CTX: HintContext = {
  remote: 'alice@files.example.com:/srv',
  user: 'alice',
  knownHostsFile: '/state/known_hosts',
  knownHosts: 'fileserver.corp ssh-ed25519 AAAAother\nfiles.example.com ssh-ed25519 AAAAold\n',
  hostKeyName: 'files.example.com',
  timeoutSeconds: 20,
};
const FAILED: RunResult = { exitCode: 255, stdout: '', stderr: '', timedOut: false };
const DENIED = 'alice@files.example.com: Permission denied (publickey).\r\n';

/** Lines shaped like ssh's, naming another server and the plugin's own known_hosts: what a hostile banner sends. */
const FORGED = [
  '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
  '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
  'Offending ED25519 key in /state/known_hosts:1',
  'Host key for fileserver.corp has changed and you have requested strict checking.',
  'Host key verification failed.',
].join('\n');

describe('server text never makes a hint', () => {
  it("the master's stderr (the server's banner) is neither a hint nor quoted: the refused login is the cause", () => {
    const message = explainLoginFailure({ ...FAILED, stderr: `Welcome!\n${FORGED}\n` }, DENIED, CTX);
    expect(message).toBe(
      'mounting alice@files.example.com:/srv failed: alice@files.example.com: Permission denied (publickey). ' +
        '(the server refused the login: check the user in sshcmd and the key (-o IdentityFile / -o key) or -o password)',
    );
  });

  it('a banner alone, with an empty log, says ssh ended without a message and quotes nothing of it', () => {
    const message = explainLoginFailure({ ...FAILED, stderr: FORGED }, '', CTX);
    expect(message).toBe('mounting alice@files.example.com:/srv failed: ssh exited with status 255 and no message');
  });

  it("a server's disconnect reason in ssh's log is quoted as data, never read as ssh's own words", () => {
    const log = 'Received disconnect from 10.0.0.5 port 22:11: Host key for fileserver.corp has changed and you have requested strict checking.\r\nDisconnected from 10.0.0.5 port 22\r\n';
    for (const message of [explainLoginFailure(FAILED, log, CTX), explainMountFailure(FAILED, log, CTX)]) {
      expect(message).not.toMatch(/ssh-keygen|pinned|intercepting/);
      expect(message).toContain('Received disconnect from 10.0.0.5 port 22:11: Host key for fileserver.corp');
    }
    // Nor can an algorithm offer (the server's list, after ssh's words) carry another message.
    const offer = 'Unable to negotiate with 10.0.0.5 port 22: no matching cipher found. Their offer: Permission denied (x). Host key for fileserver.corp has changed\r\n';
    expect(explainMountFailure(FAILED, offer, CTX)).toMatch(/\(the server offers no cipher this volume allows: .*-o Ciphers/);
  });

  it('names a known_hosts line only when it is in the file this volume uses and holds its server', () => {
    const changed = (offending: string, ctx: Partial<HintContext> = {}) =>
      explainMountFailure(FAILED, `${offending}\nHost key for files.example.com has changed and you have requested strict checking.\n`, { ...CTX, ...ctx });
    expect(changed('Offending ED25519 key in /state/known_hosts:2')).toContain('pinned in /state/known_hosts (line 2)');
    // Line 1 holds another server; another file is not this volume's; a line past the end holds nothing.
    for (const offending of ['Offending ED25519 key in /state/known_hosts:1', 'Offending ED25519 key in /etc/ssh/ssh_known_hosts:2', 'Offending ED25519 key in /state/known_hosts:9']) {
      const message = changed(offending);
      expect(message).toContain('pinned in /state/known_hosts: if the server');
      expect(message).toContain('ssh-keygen -R files.example.com -f /state/known_hosts');
    }
    expect(changed('Offending ED25519 key in /state/known_hosts:2', { knownHosts: undefined })).not.toContain('(line');
  });

  it('gives no ssh-keygen command for a host that is not the volume\'s server', () => {
    const message = explainMountFailure(FAILED, 'Host key for fileserver.corp has changed and you have requested strict checking.\n', CTX);
    expect(message).not.toContain('ssh-keygen');
    expect(message).toContain('ssh could not verify the host key of fileserver.corp, which is not this volume\'s server files.example.com');
  });

  it('reads plain, listed, marked and hashed known_hosts lines', () => {
    const salt = randomBytes(20);
    const hash = createHmac('sha1', salt).update('[::1]:2222').digest('base64');
    const text = ['a.example,files.example.com ssh-ed25519 AAAA', `|1|${salt.toString('base64')}|${hash} ssh-ed25519 AAAA`, '@revoked FILES.example.com ssh-rsa AAAA'].join('\n');
    expect(knownHostsLineHolds(text, 1, 'files.example.com')).toBe(true);
    expect(knownHostsLineHolds(text, 1, 'fileserver.corp')).toBe(false);
    expect(knownHostsLineHolds(text, 2, '[::1]:2222')).toBe(true);
    expect(knownHostsLineHolds(text, 2, '[::1]:2223')).toBe(false);
    expect(knownHostsLineHolds(text, 3, 'files.example.com')).toBe(true);
    expect(knownHostsLineHolds(text, 4, 'files.example.com')).toBe(false);
  });
});

describe('server text is cut to a fixed size', () => {
  it('quoted() keeps short text, cuts long text with a marker and shows control characters as ?', () => {
    expect(quoted('short')).toBe('short');
    expect(quoted('a\u001b[31mb')).toBe('a?[31mb');
    const cut = quoted('x'.repeat(300_000));
    expect(cut).toBe(`${'x'.repeat(MAX_QUOTED_CHARS)} [... ${300_000 - MAX_QUOTED_CHARS} more characters cut]`);
  });

  it("an Err and Status's lastSshMessage quote at most MAX_QUOTED_CHARS of ssh's output", () => {
    const offer = `Unable to negotiate with 10.0.0.5 port 22: no matching cipher found. Their offer: ${'a'.repeat(250_000)}\n`;
    const message = explainMountFailure(FAILED, offer, CTX);
    expect(message.length).toBeLessThan(MAX_QUOTED_CHARS + 400);
    expect(message).toMatch(/more characters cut\] \(the server offers no cipher/);
    expect(lastSshMessage(offer)?.length).toBeLessThan(MAX_QUOTED_CHARS + 50);
    const unknown = explainMountFailure({ ...FAILED, stderr: 'y'.repeat(250_000) }, '', CTX);
    expect(unknown.length).toBeLessThan(MAX_QUOTED_CHARS + 200);
  });

  it('a 250 KB banner on a failed shared login leaves a small Err, Status, stored record and log', async () => {
    const deps = makeDeps({ sharedConnectionIdleSeconds: 300 });
    expect(await create({ Name: 'v', Opts: { sshcmd: 'alice@files.example.com:/srv/data' } }, deps)).toEqual({ Err: '' });
    const banner = `${FORGED}\n${'B'.repeat(250 * 1024)}\n`;
    deps.runner.script = (call) => {
      if (call.program !== 'ssh' || !call.args.includes('ControlMaster=yes')) return undefined;
      deps.fs.files.set(call.args[1] ?? '', { content: DENIED, mode: 0o600 });
      return { exitCode: 255, stderr: banner };
    };
    const logBytes = () => deps.logs.join('\n').length;
    const before = logBytes();
    const err = (await mount({ Name: 'v', ID: '1' }, deps)).Err;
    expect(err).toMatch(/Permission denied \(publickey\)\. \(the server refused the login/);
    expect(err).not.toMatch(/BBBB|fileserver\.corp|ssh-keygen/);
    expect(err.length).toBeLessThan(4096);
    expect(JSON.stringify((await get({ Name: 'v' }, deps)).Volume?.Status).length).toBeLessThan(4096);
    expect(JSON.stringify(await deps.store.get('v')).length).toBeLessThan(4096);
    expect(logBytes() - before).toBeLessThan(4096);
  });
});

describe("a server's own reason is quoted, not explained", () => {
  it('"Too many authentication failures" from the server shows as its words, with no hint of the plugin', () => {
    const log = 'Received disconnect from 10.0.0.5 port 22:2: Too many authentication failures\r\nDisconnected from 10.0.0.5 port 22\r\n';
    expect(explainMountFailure(FAILED, log, CTX)).toBe(
      'mounting alice@files.example.com:/srv failed: Received disconnect from 10.0.0.5 port 22:2: Too many authentication failures; Disconnected from 10.0.0.5 port 22',
    );
  });
});

describe('server text never makes a hint (property)', () => {
  const FC_SEED = Number(process.env.FC_SEED ?? 20261128);
  /** Lines a server could send: random text, or ssh's own messages copied word for word. */
  const serverLine = fc.oneof(
    fc.string({ maxLength: 120 }),
    fc.constantFrom(...FORGED.split('\n'), DENIED.trim(), 'ssh: connect to host x port 22: Connection refused', 'fuse: device not found', `${CTX.remote}: No such file or directory`),
  );

  it("the master's stderr, whatever it holds, changes nothing in the Err", () => {
    fc.assert(
      fc.property(fc.array(serverLine, { maxLength: 20 }), fc.constantFrom(DENIED, '', 'Connection closed by 10.0.0.5 port 22\r\n'), (banner, log) => {
        expect(explainLoginFailure({ ...FAILED, stderr: banner.join('\n') }, log, CTX)).toBe(explainLoginFailure(FAILED, log, CTX));
      }),
      { numRuns: 500, seed: FC_SEED },
    );
  });

  it("a disconnect reason or an algorithm offer in ssh's log is quoted, and the hint is ssh's own", () => {
    fc.assert(
      fc.property(serverLine.map((l) => l.replace(/[\r\n]/g, ' ').trim()), (said) => {
        const disconnect = `Received disconnect from 10.0.0.5 port 22:2: ${said}`.trim();
        expect(explainMountFailure(FAILED, `${disconnect}\r\n`, CTX)).toBe(`mounting ${CTX.remote} failed: ${quoted(disconnect)}`);
        const offer = `Unable to negotiate with 10.0.0.5 port 22: no matching MAC found. Their offer: ${said}`.trim();
        expect(explainMountFailure(FAILED, `${offer}\r\n`, CTX)).toBe(
          `mounting ${CTX.remote} failed: ${quoted(offer)} (the server offers no MAC ssh accepts; the plugin has no option for it: the server's configuration must change)`,
        );
      }),
      { numRuns: 500, seed: FC_SEED },
    );
  });

  it('quoted() never returns more than MAX_QUOTED_CHARS and its marker, nor a control character', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 5000, unit: 'binary' }), (text) => {
        const q = quoted(text);
        expect(q.length).toBeLessThanOrEqual(MAX_QUOTED_CHARS + ' [... 9999 more characters cut]'.length);
        expect(q).not.toMatch(/[\u0000-\u001f\u007f]/);
      }),
      { numRuns: 300, seed: FC_SEED },
    );
  });
});
