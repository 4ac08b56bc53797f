// What the supervisor reads from /proc: a process's start time (so a pid reused by another program
// after a reboot or wrap-around is never taken for ours), and the CPU time and resident memory of
// a whole process group (a server and the children it forks).
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc times (USER_HZ; 100 on every Linux Keel targets). */
const TICKS_PER_SECOND = 100;
const PAGE_BYTES = 4096;

/** The fields of /proc/<pid>/stat the supervisor uses. */
export interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
  pgrp: number;
  /** utime + stime, in clock ticks. */
  cpuTicks: number;
  /** Start time after boot, in clock ticks: with the pid, identifies one process for the life of the host. */
  startTicks: number;
  rssPages: number;
}

/** Parses /proc/<pid>/stat (the command name may hold spaces and parentheses). */
export function parseStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const pid = Number(text.slice(0, text.indexOf(' ')));
  // Fields after the name, numbered from 3 (state) as in proc(5).
  const f = text
    .slice(close + 2)
    .trim()
    .split(' ');
  const at = (n: number) => Number(f[n - 3]);
  if (f.length < 22) return null;
  return {
    pid,
    state: f[0] ?? '?',
    ppid: at(4),
    pgrp: at(5),
    cpuTicks: at(14) + at(15),
    startTicks: at(22),
    rssPages: at(24),
  };
}

/** /proc/<pid>/stat, or null when there is no such process. */
export function readStat(pid: number): ProcStat | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** True when `pid` is alive (not a zombie) and is the process that started at `startTicks`. */
export function isSameProcess(pid: number, startTicks: number): boolean {
  const s = readStat(pid);
  return s !== null && s.startTicks === startTicks && s.state !== 'Z' && s.state !== 'X';
}

/** Pids of every live process in process group `pgrp`. */
export function groupMembers(pgrp: number): number[] {
  return sampleGroups().get(pgrp)?.pids ?? [];
}

/** CPU ticks, resident bytes and pids of every process group on the host, from one /proc scan. */
export function sampleGroups(): Map<number, { cpuTicks: number; rssBytes: number; pids: number[] }> {
  const out = new Map<number, { cpuTicks: number; rssBytes: number; pids: number[] }>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s || s.state === 'Z' || s.state === 'X') continue;
    const g = out.get(s.pgrp) ?? { cpuTicks: 0, rssBytes: 0, pids: [] };
    g.cpuTicks += s.cpuTicks;
    g.rssBytes += s.rssPages * PAGE_BYTES;
    g.pids.push(s.pid);
    out.set(s.pgrp, g);
  }
  return out;
}

/** CPU % of one core between two samples of cpu ticks taken `elapsedMs` apart. */
export function cpuPercent(ticksBefore: number, ticksAfter: number, elapsedMs: number): number {
  if (elapsedMs <= 0) return 0;
  return Math.max(0, ((ticksAfter - ticksBefore) / TICKS_PER_SECOND / (elapsedMs / 1000)) * 100);
}
