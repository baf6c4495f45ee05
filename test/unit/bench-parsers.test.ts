// The bench's strace parsers (scripts/bench/reads.ts, phases.ts) on excerpts shaped like real `strace -f -tt -x` output.
import { describe, expect, it } from 'vitest';
import { parseMountTrace } from '../../scripts/bench/phases.js';
import { parseTrace } from '../../scripts/bench/reads.js';

const hex = (b: Uint8Array) => [...b].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('');

/** A FUSE request as the daemon reads it from /dev/fuse: 40-byte header (len, opcode, unique), then the body. */
function fuseRequest(opcode: number, unique: number, body: Uint8Array = new Uint8Array(0)): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32LE(40 + body.length, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(BigInt(unique), 8);
  return Buffer.concat([h, body]);
}

function readIn(size: number): Buffer {
  const b = Buffer.alloc(24); // fh, offset, size
  b.writeUInt32LE(size, 16);
  return b;
}

function reply(unique: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16, 0);
  h.writeBigUInt64LE(BigInt(unique), 8);
  return h;
}

const sftpRead = (id: number, len: number) =>
  `writev(4, [{iov_base="${hex(Buffer.from([0, 0, 0, 0x19, 5, 0, 0, 0, id]))}", iov_len=9}, {iov_base="${hex(Buffer.concat([Buffer.from([0, 0, 0, 4, 0, 0, 0, 0]), Buffer.alloc(8), Buffer.from([(len >>> 24) & 255, (len >>> 16) & 255, (len >>> 8) & 255, len & 255])]))}", iov_len=20}], 2) = 29`;

describe('parseTrace (sshfs daemon during a read)', () => {
  it('finds the FUSE READ size, the most in flight and the SFTP READ size', () => {
    const req = (u: number) => hex(fuseRequest(15, u, readIn(1048576)).subarray(0, 64));
    const text = [
      `101 10:00:00.000000 read(3, "${req(2)}"..., 1052672) = 80`,
      `102 10:00:00.001000 <... read resumed>"${req(4)}"..., 1052672) = 80`,
      `101 10:00:00.001500 ${sftpRead(5, 32768)}`,
      `101 10:00:00.001600 ${sftpRead(6, 32768)}`,
      // ssh's reply data read by its exact length: never taken for a FUSE request
      `103 10:00:00.002000 read(4, "${req(9)}"..., 32776) = 32776`,
      `101 10:00:00.003000 writev(3, [{iov_base="${hex(reply(2))}", iov_len=16}, {iov_base="\\x00"..., iov_len=1048576}], 2) = 1048592`,
      `102 10:00:00.004000 writev(3, [{iov_base="${hex(reply(4))}", iov_len=16}, {iov_base="\\x00"..., iov_len=1048576}], 2) = 1048592`,
    ].join('\n');
    const t = parseTrace(text);
    expect(t.fuseSizes).toBe('1024 KiB (×2)');
    expect(t.fuseMaxInFlight).toBe(2);
    expect(t.fuseShare2).toBeCloseTo(2 / 4, 5); // 2 in flight from 1 ms to 3 ms of 4 ms
    expect(t.sftpSizes).toBe('32 KiB (×2)');
    expect(t.sftpPerMiB).toBe(32);
  });
});

describe('parseMountTrace (the plugin during one Mount)', () => {
  it('splits sshfs into mount, ssh session, SFTP init, root check, exit, then FUSE INIT and the first request', () => {
    const text = [
      '200 10:00:00.000000 execve("/usr/bin/sshfs", ["sshfs", "u@h:/x"...], 0x1 /* 3 vars */ <unfinished ...>',
      '200 10:00:00.005000 mount("u@h:/x", "/mnt/v", "fuse.sshfs", MS_NOSUID|MS_NODEV, "fd=3,rootmode=40000") = 0',
      '201 10:00:00.006000 execve("/root/.cargo/bin/ssh", ["ssh"], 0x2 /* 3 vars */) = -1 ENOENT (No such file or directory)',
      '201 10:00:00.007000 execve("/usr/bin/ssh", ["ssh", "-E"...], 0x2 /* 3 vars */) = 0',
      // ELF headers read while loading libraries have byte 4 = 2, like SSH_FXP_VERSION: not an SFTP packet
      '200 10:00:00.007500 read(3, "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00"..., 832) = 832',
      '201 10:00:00.027000 read(4, "\\x80\\x00\\x00\\x06\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x02", 12) = 12',
      '200 10:00:00.027500 <... read resumed>"\\x00\\x00\\x01\\x3e\\x02\\x00\\x00\\x00\\x03", 9) = 9',
      '200 10:00:00.028000 read(4, "\\x00\\x00\\x00\\x25\\x69", 5) = 5',
      '200 10:00:00.040000 exit_group(0)     = ?',
      `202 10:00:00.070000 read(3, "${hex(fuseRequest(26, 2, Buffer.alloc(24)).subarray(0, 16))}"..., 1052672) = 64`,
      `203 10:00:00.075000 read(3, "${hex(fuseRequest(3, 4, Buffer.alloc(16)).subarray(0, 16))}"..., 1052672) = 56`,
    ].join('\n');
    const phases = Object.fromEntries(parseMountTrace(text)?.phases.map(([k, v]) => [k, Math.round(v * 10) / 10]) ?? []);
    expect(phases).toEqual({
      mount: 5,
      'exec ssh': 2,
      'ssh session': 20,
      'SFTP init': 0.5,
      'root check': 0.5,
      'daemonize and exit': 12,
      'then: FUSE INIT read by the daemon': 30,
      'first request after it': 5,
    });
  });

  it('gives up without an sshfs start or exit', () => {
    expect(parseMountTrace('300 10:00:00.000000 execve("/usr/bin/ssh", ["ssh"], 0x1) = 0')).toBeUndefined();
  });
});
