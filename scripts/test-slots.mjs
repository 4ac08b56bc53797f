// Machine-wide slots for test runs: every `npm test` (and `node scripts/test.mjs <files>`) on one
// machine takes a slot here before it starts a test process and frees it when the process ends,
// so two runs side by side share one CPU budget instead of each filling the cores (two runs at
// load 17-31 starved each other's end-to-end tests past their limits). See docs/testing.md.
//
// A slot is a file `<runner pid>.<its start time>.<job>` holding the job's expected load (cores)
// and whether it is idle (an idle job takes no place, only load). Slots of a runner that is gone
// (its pid dead, or reused by a process that started at another time) are removed by whoever reads
// them next. Taking a slot happens under a lock file (O_EXCL), held for one directory read.
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

/** The start time of a process (clock ticks since boot, /proc/<pid>/stat field 22), or '' where unknown. */
export function startTimeOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** Whether the process `pid` that started at `start` (from startTimeOf; '' = not checked) still runs. */
export function alive(pid, start) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (err.code !== 'EPERM') return false;
  }
  if (!start) return true;
  const now = startTimeOf(pid);
  return now === '' || now === start;
}

const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * The slots of one runner. `budget`: cores the loads of all running jobs on the machine may add up
 * to; `places`: most non-idle jobs on the machine at once. When the machine runs no job at all, a
 * job always starts (whatever its load), so no run waits forever.
 */
export function machineSlots({ dir, budget, places, pid = process.pid }) {
  // Shared by every user's runs: writable by all, each removing only its own files (sticky, as /tmp).
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true });
    try {
      chmodSync(dir, 0o1777);
    } catch {
      // Made by another user meanwhile.
    }
  }
  const me = `${pid}.${startTimeOf(pid) || '0'}`;
  const lockFile = join(dir, '.lock');
  const mine = new Set();

  function withLock(fn) {
    for (let tries = 0; ; tries++) {
      let fd;
      try {
        fd = openSync(lockFile, 'wx');
      } catch (err) {
        if (err.code !== 'EEXIST') throw err;
        // A holder keeps it for one directory read: a lock whose holder is dead, or older than
        // 10 s, was left by a runner that died holding it.
        try {
          const [holder, start] = readFileSync(lockFile, 'utf8').split('.');
          if (!alive(Number(holder), start) || Date.now() - statSync(lockFile).mtimeMs > 10_000)
            unlinkSync(lockFile);
        } catch {
          // Freed meanwhile, or half written: retry.
        }
        // A stale lock this user may not remove (another user's, in the sticky directory): after
        // ~15 s go on without it rather than wait forever (at worst two runs both take a slot).
        if (tries > 750) return fn();
        pause(tries < 20 ? 2 : 20);
        continue;
      }
      try {
        writeFileSync(fd, me);
        closeSync(fd);
        return fn();
      } finally {
        try {
          unlinkSync(lockFile);
        } catch {
          // Taken over as stale meanwhile.
        }
      }
    }
  }

  /** The live slots on the machine ({ name, load, idle }); slots of dead runners are removed. */
  function live() {
    const out = [];
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.')) continue;
      const [p, start] = name.split('.');
      if (!alive(Number(p), start === '0' ? '' : start)) {
        try {
          unlinkSync(join(dir, name));
        } catch {
          // Another reader removed it.
        }
        continue;
      }
      try {
        const { load, idle } = JSON.parse(readFileSync(join(dir, name), 'utf8'));
        out.push({ name, load: Number(load) || 0, idle: Boolean(idle) });
      } catch {
        // Removed meanwhile: skip.
      }
    }
    return out;
  }

  return {
    /** Machine-wide totals: { load, places, slots } of every live slot. */
    usage() {
      const slots = live();
      return {
        load: slots.reduce((a, s) => a + s.load, 0),
        places: slots.filter((s) => !s.idle).length,
        slots: slots.length,
      };
    },
    /**
     * Takes a slot for `job` (a name unique in this runner) if it fits the machine; true if taken.
     * `over`: the loads may add up to that multiple of the budget (the caller measured the cores
     * idle: see `spareBelow` in scripts/test.mjs).
     */
    take(job, load, { idle = false, over = 1 } = {}) {
      return withLock(() => {
        const slots = live();
        const used = slots.reduce((a, s) => a + s.load, 0);
        const placesUsed = slots.filter((s) => !s.idle).length;
        const fits =
          slots.length === 0 || ((idle || placesUsed < places) && used + load <= budget * over + 1e-9);
        if (!fits) return false;
        const name = `${me}.${job}`;
        // Renamed into place so a reader never sees it half written.
        writeFileSync(join(dir, `.${name}.tmp`), JSON.stringify({ load, idle }));
        renameSync(join(dir, `.${name}.tmp`), join(dir, name));
        mine.add(name);
        return true;
      });
    },
    /** Frees the slot of `job`. */
    free(job) {
      const name = `${me}.${job}`;
      mine.delete(name);
      try {
        unlinkSync(join(dir, name));
      } catch {
        // Already reclaimed.
      }
    },
    /** Frees every slot this runner holds (at its end, on SIGINT/SIGTERM). */
    freeAll() {
      for (const name of mine)
        try {
          unlinkSync(join(dir, name));
        } catch {
          // Already reclaimed.
        }
      mine.clear();
    },
  };
}
