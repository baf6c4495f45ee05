// Issue 19 item 3: an operator's credential goes only to the servers the operator named for it. A password file
// names them in its `# sshfs-for:` line (required); a key may be bound by `<key>.sshfs-for` (opt-in), the default key
// included. Checked at Create and at every Mount, before anything runs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { create, get, mount } from '../../adapter/docker/routes.js';
import { allows, boundPassword, normalHost, parseBindingLines, serverText, type Server } from '../../handlers/credentials.js';
import { DEFAULT_KEY, makeDeps, type TestDeps } from './fixtures.js';

const FC_SEED = Number(process.env.FC_SEED ?? 20261128);
const SSHCMD = 'alice@files.example.com:/srv/data';
const ATTACKER = 'alice@evil.example:/x';

const sshfsCalls = (d: TestDeps) => d.runner.calls.filter((c) => c.program === 'sshfs' || c.program === 'ssh');

async function refusedAtCreate(deps: TestDeps, opts: Record<string, string>, message: RegExp): Promise<string> {
  const res = await create({ Name: 'v', Opts: opts }, deps);
  expect(res.Err).toMatch(message);
  expect(await deps.store.list()).toEqual([]);
  expect(sshfsCalls(deps)).toEqual([]);
  return res.Err;
}

const pwFile = (deps: TestDeps, name: string, content: string) => deps.fs.files.set(`/keys/${name}`, { content, mode: 0o600 });

describe('password_file is sent only to the servers its first line names', () => {
  it('a file without "# sshfs-for:" is sent nowhere; the Err gives the line to write, for this server', async () => {
    const deps = makeDeps();
    pwFile(deps, 'alice.pw', 's3cr3t\n');
    const err = await refusedAtCreate(deps, { sshcmd: SSHCMD, password_file: 'alice.pw' }, /does not say which servers it may be sent to/);
    expect(err).toContain('the operator must make its first line "# sshfs-for: alice@files.example.com:22"');
    expect(err).not.toContain('s3cr3t');
  });

  it('goes to its server (port 22 when left out) and is given on stdin without its first line', async () => {
    const deps = makeDeps();
    pwFile(deps, 'alice.pw', '# sshfs-for: alice@files.example.com\ns3cr3t\n');
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, password_file: 'alice.pw' } }, deps)).toEqual({ Err: '' });
    expect((await mount({ Name: 'v', ID: 'x' }, deps)).Err).toBe('');
    expect(deps.runner.calls.find((c) => c.program === 'sshfs')?.input).toBe('s3cr3t\n');
  });

  it('refuses another server, user or port with what the operator must add, naming none of the allowed servers', async () => {
    const deps = makeDeps();
    pwFile(deps, 'alice.pw', '# sshfs-for: alice@files.example.com:22 bob@files.example.com:2222\ns3cr3t\n');
    for (const [opts, wanted] of [
      [{ sshcmd: ATTACKER }, 'alice@evil.example:22'],
      [{ sshcmd: 'mallory@files.example.com:/x' }, 'mallory@files.example.com:22'],
      [{ sshcmd: SSHCMD, port: '2222' }, 'alice@files.example.com:2222'],
      [{ sshcmd: 'files.example.com:/x' }, 'root@files.example.com:22'],
    ] as const) {
      const err = await refusedAtCreate(deps, { ...opts, password_file: 'alice.pw' }, /may not be sent to/);
      expect(err).toContain(`password_file /keys/alice.pw may not be sent to ${wanted}`);
      expect(err).toContain(`the operator must add ${wanted} to that line`);
      expect(err).not.toMatch(/bob@|s3cr3t/);
    }
    expect(await create({ Name: 'b', Opts: { sshcmd: 'bob@FILES.example.com:/x', port: '2222', password_file: 'alice.pw' } }, deps)).toEqual({ Err: '' });
  });

  it('is checked again at every Mount: a file rebound to other servers after Create is not sent', async () => {
    const deps = makeDeps();
    pwFile(deps, 'alice.pw', '# sshfs-for: alice@files.example.com\ns3cr3t\n');
    expect(await create({ Name: 'v', Opts: { sshcmd: SSHCMD, password_file: 'alice.pw' } }, deps)).toEqual({ Err: '' });
    pwFile(deps, 'alice.pw', '# sshfs-for: alice@other.example.com\ns3cr3t\n');
    expect((await mount({ Name: 'v', ID: 'x' }, deps)).Err).toMatch(/may not be sent to alice@files\.example\.com:22/);
    expect(sshfsCalls(deps)).toEqual([]);
    expect((await get({ Name: 'v' }, deps)).Volume?.Status).toMatchObject({ lastError: expect.stringMatching(/may not be sent/) });
  });

  it('takes IPv6 hosts in brackets, in any spelling, and refuses an unbracketed one without echoing it', async () => {
    const deps = makeDeps();
    pwFile(deps, 'v6.pw', '# sshfs-for: alice@[::1] alice@[2001:DB8::1]:2222\npw\n');
    expect(await create({ Name: 'a', Opts: { sshcmd: 'alice@[0:0::1]:/x', password_file: 'v6.pw' } }, deps)).toEqual({ Err: '' });
    expect(await create({ Name: 'b', Opts: { sshcmd: 'alice@[2001:db8:0::1]:/x', port: '2222', password_file: 'v6.pw' } }, deps)).toEqual({ Err: '' });
    const err = (await create({ Name: 'c', Opts: { sshcmd: 'alice@[::2]:/x', password_file: 'v6.pw' } }, deps)).Err;
    expect(err).toContain('may not be sent to alice@[::2]:22');
    pwFile(deps, 'bad.pw', '# sshfs-for: alice@::1\npw\n');
    const bad = (await create({ Name: 'd', Opts: { sshcmd: 'alice@[::1]:/x', password_file: 'bad.pw' } }, deps)).Err;
    expect(bad).toMatch(/entry 1 of a "# sshfs-for:" line is not user@host\[:port\] \(an IPv6 address in brackets/);
    expect(bad).not.toContain('alice@::1');
  });

  it('holds one password line after one or more "# sshfs-for:" lines', () => {
    const to = { user: 'alice', host: 'h', port: 22 };
    expect(boundPassword('# sshfs-for: bob@x\n# sshfs-for: alice@h\r\npw\r\n', 'f', to)).toBe('pw');
    expect(() => boundPassword('# sshfs-for: alice@h\n', 'f', to)).toThrow(/password on one line/);
    expect(() => boundPassword('# sshfs-for: alice@h\npw\nmore\n', 'f', to)).toThrow(/password on one line/);
    expect(() => boundPassword('# sshfs-for: alice@h\npw\n# sshfs-for: mallory@evil\n', 'f', to)).toThrow(/password on one line/);
    expect(() => boundPassword('pw\n# sshfs-for: alice@h\n', 'f', to)).toThrow(/does not say which servers/);
    expect(() => boundPassword('# sshfs-for: alice@h:0\npw\n', 'f', to)).toThrow(/entry 1 .* is not user@host/);
  });
});

describe('a key bound to servers (<key>.sshfs-for) logs in only to those', () => {
  it('IdentityFile: refused for another server, used for its own; unbound keys go anywhere', async () => {
    const deps = makeDeps();
    pwFile(deps, 'id_alice', 'k');
    pwFile(deps, 'id_alice.sshfs-for', '# sshfs-for: alice@files.example.com\n\n');
    pwFile(deps, 'id_free', 'k');
    const err = await refusedAtCreate(deps, { sshcmd: ATTACKER, IdentityFile: 'id_alice' }, /IdentityFile \/keys\/id_alice may not log in to alice@evil\.example:22/);
    expect(err).toContain('the operator must add alice@evil.example:22 to a "# sshfs-for:" line there');
    expect(await create({ Name: 'a', Opts: { sshcmd: SSHCMD, IdentityFile: 'id_alice' } }, deps)).toEqual({ Err: '' });
    expect(await create({ Name: 'b', Opts: { sshcmd: ATTACKER, IdentityFile: 'id_free' } }, deps)).toEqual({ Err: '' });
  });

  it('a bound key must allow every jump host too: each hop logs in with it', async () => {
    const deps = makeDeps();
    pwFile(deps, 'id_alice', 'k');
    pwFile(deps, 'id_alice.sshfs-for', '# sshfs-for: alice@files.example.com bob@bastion.example:2222\n');
    const hop = { sshcmd: SSHCMD, IdentityFile: 'id_alice' };
    await refusedAtCreate(deps, { ...hop, ProxyJump: 'mallory@evil.example' }, /may not log in to mallory@evil\.example:22/);
    expect(await create({ Name: 'j', Opts: { ...hop, ProxyJump: 'bob@bastion.example:2222' } }, deps)).toEqual({ Err: '' });
  });

  it("the operator's default key too, without falling back to another default key", async () => {
    const deps = makeDeps();
    pwFile(deps, 'id_ed25519.sshfs-for', '# sshfs-for: alice@files.example.com\n');
    pwFile(deps, 'id_ecdsa', 'k');
    await refusedAtCreate(deps, { sshcmd: ATTACKER }, /the default key \/keys\/id_ed25519 may not log in to alice@evil\.example:22/);
    expect(await create({ Name: 'a', Opts: { sshcmd: SSHCMD } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'a', ID: 'x' }, deps);
    expect(deps.runner.calls.find((c) => c.program === 'sshfs')?.args).toContain(`IdentityFile=${DEFAULT_KEY}`);
  });

  it('binds a key reached through a symlink by the file it resolves to; a binding file must itself stay in the keys directory', async () => {
    const deps = makeDeps();
    pwFile(deps, 'id_alice', 'k');
    pwFile(deps, 'id_alice.sshfs-for', '# sshfs-for: alice@files.example.com\n');
    deps.fs.links.set('/keys/alias', '/keys/id_alice');
    await refusedAtCreate(deps, { sshcmd: ATTACKER, IdentityFile: 'alias' }, /may not log in to alice@evil\.example:22/);
    // A binding that leads out of the keys directory is refused rather than read.
    pwFile(deps, 'id_b', 'k');
    deps.fs.files.set('/etc/passwd', { content: 'root:x:0:0::/root:/bin/sh\n', mode: 0o644 });
    deps.fs.links.set('/keys/id_b.sshfs-for', '/etc/passwd');
    const err = await refusedAtCreate(deps, { sshcmd: SSHCMD, IdentityFile: 'id_b' }, /id_b\.sshfs-for is not a readable file .* in the plugin's keys directory/);
    expect(err).not.toContain('root:x');
    // Anything but "# sshfs-for:" lines is refused, without echoing it.
    pwFile(deps, 'id_c', 'k');
    pwFile(deps, 'id_c.sshfs-for', 'alice@files.example.com\n');
    expect(await refusedAtCreate(deps, { sshcmd: SSHCMD, IdentityFile: 'id_c' }, /line 1 is not a "# sshfs-for:" line/)).not.toContain('alice@files');
  });

  it('a key given with -o key is the user\'s own and goes where they say', async () => {
    const deps = makeDeps();
    pwFile(deps, 'id_ed25519.sshfs-for', '# sshfs-for: alice@files.example.com\n');
    const key = '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n';
    expect(await create({ Name: 'own', Opts: { sshcmd: ATTACKER, key } }, deps)).toEqual({ Err: '' });
  });
});

describe('binding entries (property)', () => {
  const user = fc.stringMatching(/^[a-z_][a-z0-9._-]{0,8}$/);
  const name = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z]{2,4}){0,2}$/);
  const v6 = fc.ipV6().filter((a) => !a.includes('%'));
  const host = fc.oneof(name, fc.ipV4(), v6.map((a) => `[${a}]`));
  const port = fc.integer({ min: 1, max: 65535 });

  it('a server written as user@host:port allows exactly itself: any other user, host or port is refused', () => {
    fc.assert(
      fc.property(user, host, port, user, host, port, (u, h, p, u2, h2, p2) => {
        const written = `${u}@${h}:${p}`;
        const servers = parseBindingLines([`# sshfs-for: ${written}`], 'f');
        const self: Server = { user: u, host: normalHost(h), port: p };
        expect(allows(servers, self)).toBe(true);
        // serverText gives back what the operator writes, and that parses to the same server.
        expect(parseBindingLines([`# sshfs-for: ${serverText(self)}`], 'f')).toEqual([self]);
        const other: Server = { user: u2, host: normalHost(h2), port: p2 };
        const same = u2 === u && normalHost(h2) === normalHost(h) && p2 === p;
        expect(allows(servers, other)).toBe(same);
      }),
      { numRuns: 1000, seed: FC_SEED },
    );
  });

  it('one IPv6 address in any spelling is one server', () => {
    fc.assert(
      fc.property(v6, (a) => {
        expect(normalHost(`[${a}]`)).toBe(normalHost(`[${a.toUpperCase()}]`));
        expect(normalHost(`[${a}]`)).toBe(new URL(`ssh://[${a}]`).hostname.slice(1, -1));
      }),
      { numRuns: 500, seed: FC_SEED },
    );
  });
});
