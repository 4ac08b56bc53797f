// Memory and CPU limits for supervised processes through cgroup v2, where the host delegates the
// controllers to the agent. Each limited process gets a cgroup of its own, `keel-<name>`, beside
// the agent's, with `memory.max` and `cpu.max` written before the program runs (the keeper waits
// until the agent has moved it in before it starts the program, so nothing the program allocates
// or forks escapes the limit: keeper.ts).
//
// Where the host cannot (cgroup v1 or a hybrid host whose v2 hierarchy lacks the controllers, a
// read-only /sys/fs/cgroup in a container, a unit without Delegate=yes) nothing is changed on the
// host: `prepare` answers why, the process runs without the limit and its status says so.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessLimits } from '@keel/shared';

/** Where the cgroup v2 hierarchy is and which cgroup the agent is in (both overridable for tests). */
export interface CgroupHost {
  /** Mount point of the cgroup2 file system, or null when none is mounted. */
  mount: string | null;
  /** The agent's own cgroup path inside it (`/system.slice/keel-agent.service`). */
  self: string;
}

/** Finds the cgroup2 mount (/proc/self/mountinfo) and the agent's cgroup (/proc/self/cgroup `0::`). */
export function detectCgroupHost(): CgroupHost {
  let mount: string | null = null;
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      // `id parent major:minor root mountpoint options... - fstype source superoptions`
      const [left, right] = line.split(' - ');
      if (!left || !right || !right.startsWith('cgroup2 ')) continue;
      mount = left.split(' ')[4] ?? null;
      break;
    }
  } catch {
    // no /proc: no cgroups either
  }
  let self = '/';
  try {
    const line = readFileSync('/proc/self/cgroup', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'));
    if (line) self = line.slice(3) || '/';
  } catch {
    // keep the root
  }
  return { mount, self };
}

/** A cgroup ready for one process, or why there is none. */
export type CgroupPlan = { ok: true; path: string; relative: string } | { ok: false; message: string };

const words = (path: string): string[] => {
  try {
    return readFileSync(path, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
};

/** The controllers a set of limits needs. */
function needed(limits: ProcessLimits): ('memory' | 'cpu')[] {
  const out: ('memory' | 'cpu')[] = [];
  if (limits.memoryBytes !== undefined) out.push('memory');
  if (limits.cpuPercent !== undefined) out.push('cpu');
  return out;
}

/** `cpu.max` for a share of one core: quota and period in microseconds. */
export function cpuMax(percent: number, periodUs = 100_000): string {
  return `${Math.max(1_000, Math.round((percent / 100) * periodUs))} ${periodUs}`;
}

/**
 * Makes (or reuses) the cgroup `keel-<name>` beside the agent's own, with the limits written.
 * Never throws: a host that cannot is answered with a message naming what is missing.
 */
export function prepareCgroup(host: CgroupHost, name: string, limits: ProcessLimits): CgroupPlan {
  const want = needed(limits);
  if (want.length === 0) return { ok: false, message: 'no limits set' };
  if (!host.mount) {
    return {
      ok: false,
      message: 'limits not applied: no cgroup v2 file system is mounted on this host (cgroup v1 only)',
    };
  }
  // The agent's cgroup holds the agent: with controllers enabled for its children it may hold no
  // process itself ("no internal processes"), so the agent's cgroup is the parent of a leaf for
  // the agent and one per limited process. systemd's Delegate=yes gives the agent that subtree.
  const parent = join(host.mount, host.self);
  const available = words(join(parent, 'cgroup.controllers'));
  const missing = want.filter((c) => !available.includes(c));
  if (missing.length > 0) {
    return {
      ok: false,
      message:
        `limits not applied: the cgroup v2 hierarchy at ${parent} does not offer the ${missing.join(' and ')} ` +
        `controller${missing.length > 1 ? 's' : ''} (offered: ${available.join(' ') || 'none'}); ` +
        'the host keeps them on cgroup v1, or the agent was not delegated its subtree (Delegate=yes)',
    };
  }
  try {
    const enabled = words(join(parent, 'cgroup.subtree_control'));
    const toEnable = want.filter((c) => !enabled.includes(c));
    if (toEnable.length > 0) {
      // The agent's own processes move to a leaf first, then the controllers are enabled below.
      const agentLeaf = join(parent, 'keel-agent');
      mkdirSync(agentLeaf, { recursive: true });
      for (const pid of words(join(parent, 'cgroup.procs'))) {
        try {
          writeFileSync(join(agentLeaf, 'cgroup.procs'), pid);
        } catch {
          // gone meanwhile, or a kernel thread that cannot move
        }
      }
      writeFileSync(join(parent, 'cgroup.subtree_control'), toEnable.map((c) => `+${c}`).join(' '));
    }
    const leaf = join(parent, `keel-${name}`);
    if (!existsSync(leaf)) mkdirSync(leaf);
    writeFileSync(
      join(leaf, 'memory.max'),
      limits.memoryBytes === undefined ? 'max' : String(limits.memoryBytes),
    );
    if (limits.memoryBytes !== undefined) {
      // No swap beyond the limit: past memory.max the kernel OOM-kills instead of swapping.
      try {
        writeFileSync(join(leaf, 'memory.swap.max'), '0');
      } catch {
        // no swap accounting on this kernel
      }
    }
    writeFileSync(
      join(leaf, 'cpu.max'),
      limits.cpuPercent === undefined ? 'max 100000' : cpuMax(limits.cpuPercent),
    );
    const relative = join(host.self, `keel-${name}`);
    return { ok: true, path: leaf, relative };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return {
      ok: false,
      message: `limits not applied: cannot write the cgroup under ${parent} (${e.code ?? e.message}); the agent needs a delegated, writable cgroup v2 subtree`,
    };
  }
}

/** Moves a process into a prepared cgroup; null on success, else why not. */
export function enterCgroup(plan: { path: string }, pid: number): string | null {
  try {
    writeFileSync(join(plan.path, 'cgroup.procs'), String(pid));
    return null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return `limits not applied: moving pid ${pid} into ${plan.path} failed (${e.code ?? e.message})`;
  }
}

/** OOM kills recorded for a cgroup (`oom_kill` in memory.events), or null when unreadable. */
export function oomKills(path: string): number | null {
  try {
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(path, 'memory.events'), 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return null;
  }
}
