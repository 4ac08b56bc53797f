// Punches holes in output files (fallocate PUNCH_HOLE) for the log tailer without the agent forking
// itself per punch. Node has no fallocate, so a punch has always been util-linux's `fallocate` in a
// child; spawning it from the agent forks the whole agent (its page tables: 4-18 ms of the agent's
// CPU per punch measured beside a 200 MB heap, at load 1-13) and stops the event loop until the
// child has exec'd. Instead one small `sh` is started once, on the first punch, and stays: the
// tailer writes it `fd offset length` lines, and it runs `fallocate` on `/proc/<agent pid>/fd/<fd>`
// — the very file the tailer opened, even if its path was replaced meanwhile, as `/dev/fd/3` was
// for the child before — and answers each line with `0` or `1 <message>`, in order. The forks are
// now the shell's (a few hundred KiB of memory), not the agent's.
//
// The script is fixed; the shell reads only numbers the tailer wrote (never input from elsewhere).
// Should the helper not start or not be able to reopen the agent's fds (a /proc mounted with
// restrictions, say), the tailer falls back to one `fallocate` child per punch (`punchBySpawn`).
import { spawn, type ChildProcess } from 'node:child_process';

const SCRIPT =
  'while read -r fd off len; do ' +
  'if e=$(fallocate --punch-hole --offset "$off" --length "$len" "/proc/$1/fd/$fd" 2>&1); then echo 0; ' +
  'else echo "1 $(printf %s "$e" | tr "\\n" " ")"; fi; ' +
  'done';

type Done = (error: string | null) => void;

/**
 * One long-lived `sh` that punches ranges of files the agent holds open (see the header).
 *
 * @example puncher.punch(fd, 0, 16 << 20, (err) => { closeSync(fd); if (err) log.warn(err); });
 */
export class HolePuncher {
  #child: ChildProcess | null = null;
  #waiting: Done[] = [];
  #buffered = '';
  /** Helper processes started (the tests check that punches do not each start one). */
  started = 0;

  /** The helper's pid (null until the first punch, or after it ended). */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /**
   * Punches `[offset, offset + length)` out of the file open as `fd` in this process; `done` gets
   * null or why it failed. The caller keeps `fd` open until then.
   */
  punch(fd: number, offset: number, length: number, done: Done): void {
    const child = this.#child ?? this.#start();
    if (!child?.stdin?.writable) {
      done('the punch helper is not running');
      return;
    }
    this.#waiting.push(done);
    child.stdin.write(`${fd} ${offset} ${length}\n`);
  }

  /** Ends the helper (it also ends by itself when the agent does: its stdin closes). */
  close(): void {
    const child = this.#child;
    this.#child = null;
    child?.stdin?.end();
    this.#fail('the punch helper was closed');
  }

  #start(): ChildProcess | null {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', SCRIPT, 'keel-punch', String(process.pid)], {
        stdio: ['pipe', 'pipe', 'ignore'],
      });
    } catch {
      return null;
    }
    this.started++;
    this.#child = child;
    this.#buffered = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.#buffered += d;
      for (let nl = this.#buffered.indexOf('\n'); nl >= 0; nl = this.#buffered.indexOf('\n')) {
        const line = this.#buffered.slice(0, nl);
        this.#buffered = this.#buffered.slice(nl + 1);
        const done = this.#waiting.shift();
        done?.(line === '0' ? null : line.replace(/^1 ?/, '').trim() || 'fallocate failed');
      }
    });
    const gone = () => {
      if (this.#child === child) this.#child = null;
      this.#fail('the punch helper ended');
    };
    child.on('error', gone);
    child.on('close', gone);
    child.stdin!.on('error', () => {}); // an ended helper: reported by 'close'
    // Never what keeps the agent (or a test) alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    return child;
  }

  #fail(why: string): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const done of waiting) done(why);
  }
}

/**
 * The punch as one `fallocate` child of its own (the fallback; what every punch did before the
 * helper): the child gets `fd` as its fd 3, so the caller may close it once this returns.
 */
export function punchBySpawn(fd: number, offset: number, length: number, done: Done): void {
  let stderr = '';
  let ended = false;
  const end = (error: string | null) => {
    if (ended) return;
    ended = true;
    done(error);
  };
  try {
    const child = spawn(
      'fallocate',
      ['--punch-hole', '--offset', String(offset), '--length', String(length), '/dev/fd/3'],
      { stdio: ['ignore', 'ignore', 'pipe', fd] },
    );
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => end(err.message));
    child.on('close', (code, signal) =>
      end(code === 0 ? null : stderr.trim() || `fallocate ended with ${code ?? signal}`),
    );
  } catch (err) {
    end((err as Error).message);
  }
}
