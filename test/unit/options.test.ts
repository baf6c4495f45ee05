import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../handlers/errors.js';
import { create as createEndpoint } from '../../adapter/docker/routes.js';
import { normalizeKey, OPTION_SPECS, parseOptions, parseSshcmd } from '../../handlers/options.js';
import { buildSshfsArgs } from '../../handlers/lifecycle.js';
import { mountPlan } from '../../handlers/ssh-login.js';
import { forgetOptions, optionsOrProblem } from '../../handlers/volume.js';
import { statusOf } from '../../handlers/status.js';
import type { VolumeRecord } from '../../handlers/types.js';
import { makeDeps, TEST_KEY } from './fixtures.js';

// A fixed seed keeps CI deterministic; FC_SEED=<n> explores other inputs (a failure prints the seed to rerun).
const FC_SEED = Number(process.env.FC_SEED ?? 20261128);

const base = { sshcmd: 'alice@example.com:/srv/data' };

describe('parseSshcmd', () => {
  it.each([
    ['alice@example.com:/srv/data', { user: 'alice', host: 'example.com', path: '/srv/data' }],
    ['example.com:', { host: 'example.com', path: '' }],
    ['bob@10.0.0.2:relative/dir', { user: 'bob', host: '10.0.0.2', path: 'relative/dir' }],
    ['u@[::1]:/x', { user: 'u', host: '[::1]', path: '/x' }],
    ['u@h:/path with spaces,and commas', { user: 'u', host: 'h', path: '/path with spaces,and commas' }],
  ])('accepts %s', (input, expected) => {
    expect(parseSshcmd(input)).toEqual(expected);
  });

  it.each([
    ['no colon', 'alice@example.com', /no ':'/],
    ['host starting with -', '-oProxyCommand=touch /tmp/x:/p', /host .* not a valid/],
    ['user starting with -', '-oProxyCommand=x@h:/p', /user .* not a valid/],
    ['host with space', 'a@ho st:/p', /host/],
    ['newline', 'a@h:/p\nq', /control characters/],
    ['empty host', 'a@:/p', /host/],
  ])('refuses %s', (_label, input, message) => {
    expect(() => parseSshcmd(input)).toThrow(message);
  });
});

describe('parseOptions', () => {
  it('applies the defaults users expect', () => {
    const o = parseOptions(base);
    expect(o.sshfs).toEqual({ reconnect: '', allow_other: '', idmap: 'user' });
    // As ssh gets them, in order: the values the README promises.
    expect(Object.entries(o.ssh).map(([k, v]) => `${k}=${v}`)).toEqual([
      'ServerAliveInterval=15',
      'ServerAliveCountMax=3',
      'ConnectTimeout=10',
      'StrictHostKeyChecking=accept-new',
      'Ciphers=^aes128-gcm@openssh.com',
      'Compression=no',
      'GSSAPIAuthentication=no',
    ]);
    expect(o.readAheadKb).toBe(1024);
  });

  it('lets users override the performance defaults', () => {
    const o = parseOptions({ ...base, Ciphers: 'chacha20-poly1305@openssh.com', Compression: 'yes' });
    expect(o.ssh).toMatchObject({ Ciphers: 'chacha20-poly1305@openssh.com', Compression: 'yes' });
    expect(parseOptions({ ...base, ciphers: '^aes256-gcm@openssh.com' }).ssh.Ciphers).toBe('^aes256-gcm@openssh.com');
    expect(() => parseOptions({ ...base, Ciphers: 'aes128-ctr,aes256-ctr' })).toThrow(/single name/);
    expect(parseOptions({ ...base, read_ahead_kb: '128' }).readAheadKb).toBe(128);
    expect(parseOptions(base).unmountDelaySeconds).toBe(0);
    expect(parseOptions({ ...base, unmount_delay: '300' }).unmountDelaySeconds).toBe(300);
    expect(parseOptions({ ...base, kexalgorithms: '^curve25519-sha256' }).ssh.KexAlgorithms).toBe('^curve25519-sha256');
    expect(() => parseOptions({ ...base, KexAlgorithms: 'curve25519-sha256,diffie-hellman-group1-sha1' })).toThrow(/single name/);
    expect(() => parseOptions({ ...base, read_ahead_kb: '1m' })).toThrow(/read_ahead_kb must be a whole number from 0 to 65536/);
  });

  it('matches keys case-insensitively and lets flags be turned off', () => {
    const o = parseOptions({ ...base, ALLOW_OTHER: 'false', serveraliveinterval: '30', RO: '', Port: '2222' });
    expect(o.sshfs).toEqual({ reconnect: '', idmap: 'user', ro: '' });
    expect(o.ssh.ServerAliveInterval).toBe('30');
    expect(o.port).toBe(2222);
  });

  it('requires sshcmd, without naming the plugin (its name is whatever it was installed as)', () => {
    expect(() => parseOptions({})).toThrow(/sshcmd is required: -o sshcmd=user@host:\/path/);
    expect(() => parseOptions({})).not.toThrow(/-d sshfs/);
  });

  it('mode sets the shown permission bits through FUSE\'s umask (0777 minus the mode); umask itself is refused with why', () => {
    expect(parseOptions({ ...base, mode: '755' }).sshfs.umask).toBe('022');
    expect(parseOptions({ ...base, mode: '0750' }).sshfs.umask).toBe('027');
    expect(parseOptions({ ...base, mode: '700' }).sshfs.umask).toBe('077');
    expect(parseOptions(base).sshfs).not.toHaveProperty('umask'); // by default the server's own modes show
    expect(() => parseOptions({ ...base, mode: '4755' })).toThrow(/octal permission bits such as 755/);
    expect(() => parseOptions({ ...base, umask: '022' })).toThrow(/replaces every mode with 0777 minus the mask.*-o mode=755/);
  });

  it('keeps sshfs\'s symlink containment unless contain_symlinks=false', () => {
    expect(parseOptions(base).sshfs).not.toHaveProperty('no_contain_symlinks');
    expect(parseOptions({ ...base, contain_symlinks: '' }).sshfs).not.toHaveProperty('no_contain_symlinks');
    expect(parseOptions({ ...base, contain_symlinks: 'false' }).sshfs).toMatchObject({ no_contain_symlinks: '' });
    expect(parseOptions({ ...base, contain_symlinks: 'false' }).sshfs).not.toHaveProperty('contain_symlinks');
  });

  it.each(['', 'true', 'yes', 'on', '1', 'TRUE'])('a flag set with %j is on', (v) => {
    expect(parseOptions({ ...base, ro: v }).sshfs).toHaveProperty('ro', '');
  });
  it.each(['false', 'no', 'off', '0'])('a flag set with %j is off', (v) => {
    expect(parseOptions({ ...base, reconnect: v }).sshfs).not.toHaveProperty('reconnect');
  });

  it('takes one algorithm name with a leading ^ (prefer), + (add) or - (remove), as ssh does', () => {
    for (const v of ['^aes256-gcm@openssh.com', '+aes128-cbc', '-chacha20-poly1305@openssh.com', 'aes256-ctr']) {
      expect(parseOptions({ ...base, Ciphers: v }).ssh.Ciphers).toBe(v);
      expect(parseOptions({ ...base, KexAlgorithms: v }).ssh.KexAlgorithms).toBe(v);
    }
    expect(() => parseOptions({ ...base, Ciphers: '^+aes' })).toThrow(/single name/);
  });

  it.each([
    ['ProxyCommand', 'touch /tmp/pwned'],
    ['ssh_command', 'sh -c id'],
    ['LocalCommand', 'id'],
    ['PermitLocalCommand', 'yes'],
    ['allow_other,ssh_command', 'x'],
    ['-oProxyCommand', 'x'],
    ['debug', ''],
    ['password_stdin', ''],
  ])('refuses the key %s with the allowed list', (key, value) => {
    expect(() => parseOptions({ ...base, [key]: value })).toThrow(/is not supported; the options are: sshcmd, port/);
  });

  it.each([
    ['uid', '0,ssh_command=sh'],
    ['uid', '-1'],
    ['port', '70000'],
    ['port', '22 -oProxyCommand=x'],
    ['umask', '999'],
    ['mode', '999'],
    ['mode', '75'],
    ['contain_symlinks', 'maybe'],
    ['Ciphers', 'aes128-ctr,ssh_command=x'],
    ['Ciphers', 'aes128-ctr -oProxyCommand=x'],
    ['IdentityFile', '/etc/ssh/ssh_host_ed25519_key'],
    ['IdentityFile', '/keysX/id'],
    ['IdentityFile', 'sub//key'],
    ['IdentityFile', './key'],
    ['UserKnownHostsFile', '/mnt/state/volumes.journal'],
    ['password_file', '/root/.ssh/id_rsa'],
    ['IdentityFile', '/keys/a,ssh_command=x'],
    ['IdentityFile', '/keys/../etc/shadow'],
    ['UserKnownHostsFile', '/a b'],
    ['StrictHostKeyChecking', 'no'],
    ['idmap', 'file'],
    ['cache', 'maybe'],
    ['reconnect', 'sometimes'],
    ['max_conns', '0'],
    ['read_ahead_kb', '65537'],
    ['unmount_delay', '1h'],
    ['unmount_delay', '86401'],
    ['read_ahead_kb', '-1'],
    ['ServerAliveInterval', '5\n-oProxyCommand=x'],
    ['password', 'a\nb'],
    ['password', ''],
  ])('refuses %s=%j', (key, value) => {
    expect(() => parseOptions({ ...base, [key]: value })).toThrow(UserError);
  });

  it('refuses two kinds of authentication at once', () => {
    expect(() => parseOptions({ ...base, password: 'x', IdentityFile: '/keys/id' })).toThrow(/only one of/);
  });

  it('refuses the same key twice in different case', () => {
    expect(() => parseOptions({ ...base, port: '22', PORT: '23' })).toThrow(/given twice/);
  });

  it('accepts passwords with special characters as they are', () => {
    expect(parseOptions({ ...base, password: `p@ss w,rd!$'"\\` }).password).toBe(`p@ss w,rd!$'"\\`);
  });
});

describe('normalizeKey', () => {
  it('adds the trailing newline ssh needs', () => {
    expect(normalizeKey(TEST_KEY)).toBe(`${TEST_KEY}\n`);
  });
  it('accepts the key base64-encoded', () => {
    expect(normalizeKey(Buffer.from(TEST_KEY).toString('base64'))).toBe(`${TEST_KEY}\n`);
  });
  it('refuses anything else', () => {
    expect(() => normalizeKey('ssh-ed25519 AAAA public key')).toThrow(/must be a private key/);
  });
});

describe('hostile option values never reach sshfs as extra options', () => {
  const keys = Object.keys(OPTION_SPECS).filter((k) => !['sshcmd', 'key', 'password'].includes(k));
  it('every accepted value yields -o arguments without commas, newlines or a leading dash', () => {
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.string({ maxLength: 40 }), (key, value) => {
        let parsed;
        try {
          parsed = parseOptions({ ...base, [key]: value });
        } catch (error) {
          expect(error).toBeInstanceOf(UserError);
          return;
        }
        const args = buildSshfsArgs(
          mountPlan(
            parsed,
            { keyFile: parsed.identityFile ?? '/keys/id_ed25519', source: 'test' },
            { mountpoint: '/mnt/volumes/v', knownHostsFile: '/state/known_hosts', sshLogFile: '/state/logs/v.ssh.log' },
          ),
        );
        expect(args.filter((a) => a.startsWith('ssh_command=')).length).toBe(1);
        args.forEach((arg, i) => {
          expect(arg).not.toMatch(/[\n\r\0]/);
          if (args[i - 1] === '-o' && arg !== 'ssh_command=ssh -E /state/logs/v.ssh.log -F none') {
            expect(arg).not.toMatch(/(^|[^\\]),/); // only backslash-escaped commas, which FUSE keeps in the value
            // ProxyJump's ProxyCommand is the plugin's own (its words are checked in servers.test.ts).
            expect(arg).not.toMatch(key === 'ProxyJump' ? /^(ssh_command|LocalCommand|PermitLocalCommand)/i : /^(ssh_command|ProxyCommand|LocalCommand|PermitLocalCommand)/i);
          }
          if (i >= 2 && args[i - 1] !== '-o' && args[i - 1] !== '-p') expect(arg.startsWith('-')).toBe(true);
        });
      }),
      { numRuns: 2000, seed: FC_SEED },
    );
  });

  it('sshcmd never yields a host ssh would read as a flag', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (value) => {
        try {
          const r = parseSshcmd(value);
          expect(r.host.startsWith('-')).toBe(false);
          expect(r.user?.startsWith('-') ?? false).toBe(false);
        } catch (error) {
          expect(error).toBeInstanceOf(UserError);
        }
      }),
      { numRuns: 2000, seed: FC_SEED },
    );
  });
});

describe('stored options', () => {
  const record = (options: Record<string, string>): VolumeRecord => ({
    name: 'kept',
    createdAt: '2026-01-01T00:00:00.000Z',
    options,
    mountpoint: '/mnt/volumes/kept',
    mounts: {},
  });

  it('are parsed once per volume and kept until they change or the volume is forgotten', () => {
    const deps = makeDeps();
    const first = optionsOrProblem(record({ sshcmd: 'u@h:/p', port: '2222' }), deps);
    expect(first.opts?.port).toBe(2222);
    // A fresh copy of the same record (as the store hands out) gets the kept value, not a new parse.
    expect(optionsOrProblem(record({ sshcmd: 'u@h:/p', port: '2222' }), deps)).toBe(first);
    // Other options under the same name (removed and created again): parsed anew.
    const changed = optionsOrProblem(record({ sshcmd: 'u@h:/p', port: '2200' }), deps);
    expect(changed).not.toBe(first);
    expect(changed.opts?.port).toBe(2200);
    forgetOptions('kept', deps);
    expect(optionsOrProblem(record({ sshcmd: 'u@h:/p', port: '2200' }), deps)).not.toBe(changed);
  });

  it('that this version refuses give the problem, kept like options', () => {
    const parsed = optionsOrProblem(record({ sshcmd: 'u@h:/p', nonsense: 'x' }), makeDeps());
    expect(parsed.opts).toBeUndefined();
    expect(parsed.problem).toMatch(/created with options this version refuses: option "nonsense" is not supported/);
  });
});

describe("option names that are Object's own", () => {
  // Every name an object inherits (constructor, __proto__, toString, hasOwnProperty, valueOf...), in any case.
  const inherited = Object.getOwnPropertyNames(Object.prototype);
  const notSupported = (name: string) => new RegExp(`^option "${name.replace(/[$()*+.?[\\\]^{|}]/g, '\\$&')}" is not supported; the options are: sshcmd, `);

  it('are refused as unknown, with the usual Err', () => {
    fc.assert(
      fc.property(fc.constantFrom(...inherited), fc.constantFrom((s: string) => s, (s: string) => s.toUpperCase(), (s: string) => s.toLowerCase()), (name, spell) => {
        const key = spell(name);
        // Defined, not assigned: a key "__proto__" must be an own entry, as JSON.parse makes it from Docker's body.
        const opts = { ...base };
        Object.defineProperty(opts, key, { value: 'x', enumerable: true });
        expect(() => parseOptions(opts)).toThrow(notSupported(key));
      }),
      { numRuns: 300, seed: FC_SEED },
    );
  });

  it('reach the handler from a request body and get the same Err (`__proto__` is not dropped)', async () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const body = JSON.parse(`{"Name":"v","Opts":{"sshcmd":"a@h:/p","${name}":"x"}}`) as unknown;
      const res = await createEndpoint(body, makeDeps());
      expect(res.Err, name).toMatch(notSupported(name));
    }
  });

  it('any name the allow-list does not hold is refused the same way, never with another message', () => {
    const allowed = new Set(Object.keys(OPTION_SPECS).map((k) => k.toLowerCase()));
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom(...inherited), fc.constantFrom(...inherited).map((n) => `${n}x`)),
        (name) => {
          fc.pre(!allowed.has(name.toLowerCase()) && name.toLowerCase() !== 'umask' && !/[\u0000-\u001f\u007f]/.test(name) && name.length <= 80);
          const opts = { ...base };
          Object.defineProperty(opts, name, { value: 'x', enumerable: true });
          expect(() => parseOptions(opts)).toThrow(notSupported(name));
        },
      ),
      { numRuns: 2000, seed: FC_SEED },
    );
  });
});

describe('facts the option specs carry', () => {
  const volume: VolumeRecord = { name: 'facts', createdAt: '', options: {}, mountpoint: '/mnt/volumes/facts', mounts: {} };

  it('a spec marked secret is never shown in Status; every other option given is (sshcmd as remote)', () => {
    const secret = Object.entries(OPTION_SPECS).flatMap(([k, spec]) => ('secret' in spec && spec.secret ? [k] : []));
    expect(secret).toEqual(expect.arrayContaining(['password', 'key']));
    for (const key of Object.keys(OPTION_SPECS)) {
      if (key === 'sshcmd') continue;
      const value = `value-of-${key}`;
      // Status shows what is stored, parsed or not: a value no parse accepts still must not appear when secret.
      const status = statusOf({ ...volume, options: { sshcmd: 'u@h:/p', [key]: value } }, { state: 'mounted' }, makeDeps());
      expect(JSON.stringify(status).includes(value), `${key} shown in Status`).toBe(!secret.includes(key));
    }
  });

  it('the credential options are exactly the specs marked credential, and only one may be given', () => {
    const marked = Object.entries(OPTION_SPECS).flatMap(([k, spec]) => ('credential' in spec && spec.credential ? [k] : []));
    expect(marked).toEqual(['password', 'password_file', 'IdentityFile', 'key']);
    expect(() => parseOptions({ ...base, password: 'p', IdentityFile: 'id' })).toThrow(
      /give only one of password, password_file, IdentityFile, key \(got password and IdentityFile\)/,
    );
  });

  it('an option not given takes its spec default', () => {
    const parsed = parseOptions(base);
    expect(parsed.unmountDelaySeconds).toBe(OPTION_SPECS.unmount_delay.default);
    expect(parsed.readAheadKb).toBe(OPTION_SPECS.read_ahead_kb.default);
    expect(parsed.stallTimeoutSeconds).toBe(OPTION_SPECS.stall_timeout.default);
  });
});
