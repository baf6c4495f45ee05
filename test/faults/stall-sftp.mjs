// A hostile SFTP subsystem for the fault tests (sshd_config: `Subsystem sftp /usr/bin/node stall-sftp.mjs CONTROL_DIR`).
// It runs the real sftp-server and passes SFTP packets both ways, until it stalls: after CONTROL_DIR/stall-after
// client packets (read once, when the session starts), or as soon as CONTROL_DIR/stall-now exists. From then on it
// still reads everything the client sends (so the channel never fills up) but forwards nothing: the ssh connection
// stays up and answers keepalives, yet no SFTP request is ever answered. Each session appends what it did to
// CONTROL_DIR/sessions.log, so the test can check that the stall really happened. With CONTROL_DIR/slow-bps (read once,
// when the session starts) it never stalls but sends the server's answers at that many bytes per second: a slow server
// that is still alive.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { clearInterval, setInterval } from 'node:timers';

const SFTP_SERVER = '/usr/lib/openssh/sftp-server';
const control = process.argv[2] ?? '';
const stallNow = path.join(control, 'stall-now');
const log = (line) => {
  try {
    appendFileSync(path.join(control, 'sessions.log'), `${process.pid} ${new Date().toISOString()} ${line}\n`);
  } catch {
    // the log is only a help for the test
  }
};

let stallAfter = Infinity;
try {
  const text = readFileSync(path.join(control, 'stall-after'), 'utf8').trim();
  if (/^[0-9]+$/.test(text)) stallAfter = Number(text);
} catch {
  // no file: stall only on stall-now
}

let bytesPerSecond = 0;
try {
  const text = readFileSync(path.join(control, 'slow-bps'), 'utf8').trim();
  if (/^[0-9]+$/.test(text)) bytesPerSecond = Number(text);
} catch {
  // no file: full speed
}

const server = spawn(SFTP_SERVER, [], { stdio: ['pipe', 'pipe', 'inherit'] });
if (bytesPerSecond > 0) {
  // Server -> client at bytesPerSecond, in slices every 100 ms; the server is paused while much is queued.
  const slice = Math.max(1, Math.floor(bytesPerSecond / 10));
  let queue = Buffer.alloc(0);
  server.stdout.on('data', (chunk) => {
    queue = Buffer.concat([queue, chunk]);
    if (queue.length > 4 * 1024 * 1024) server.stdout.pause();
  });
  setInterval(() => {
    if (queue.length === 0) return;
    process.stdout.write(queue.subarray(0, slice));
    queue = queue.subarray(slice);
    if (queue.length < 1024 * 1024) server.stdout.resume();
  }, 100);
} else {
  server.stdout.pipe(process.stdout);
}
server.on('exit', () => process.exit(0));
server.stdin.on('error', () => undefined);
process.stdout.on('error', () => process.exit(0));

let forwarded = 0;
let stalled = false;
let pending = Buffer.alloc(0);
log(`session start, stall-after ${stallAfter}, slow-bps ${bytesPerSecond}`);

const stall = (why) => {
  if (stalled) return;
  stalled = true;
  log(`stalled (${why}) after ${forwarded} client packets`);
};
const poll = setInterval(() => {
  if (existsSync(stallNow)) stall('stall-now');
}, 100);
if (forwarded >= stallAfter) stall('stall-after');

// Client -> server, a whole SFTP packet (uint32 length + body) at a time.
process.stdin.on('data', (chunk) => {
  if (stalled) return;
  pending = Buffer.concat([pending, chunk]);
  while (!stalled && pending.length >= 4) {
    const size = 4 + pending.readUInt32BE(0);
    if (pending.length < size) break;
    server.stdin.write(pending.subarray(0, size));
    pending = pending.subarray(size);
    forwarded += 1;
    if (forwarded >= stallAfter) stall('stall-after');
  }
  if (stalled) pending = Buffer.alloc(0);
});
// The client went away (sshfs ended, or the connection dropped): end with it, leaving nothing running.
process.stdin.on('close', () => {
  clearInterval(poll);
  log(`session end, ${forwarded} client packets forwarded${stalled ? ', stalled' : ''}`);
  server.kill('SIGKILL');
  process.exit(0);
});
process.stdin.on('end', () => process.stdin.destroy());
