// The keeper: a few lines of `sh` that stay the parent of a supervised program, so its exit
// status is known even when the agent that started it is gone. A program adopted after an agent
// restart is not the new agent's child: without a parent of its own its status would go to init.
//
// `sh -c KEEPER keel-keeper <cgroup> <argv...>` — the script is fixed, the program's argv are
// positional parameters (never parsed by a shell). The keeper leads the process group; it
//  1. waits until the agent has moved it into `<cgroup>` when one is given, so the program and
//     everything it forks are charged to it (cgroup.ts): 3-4 s at most by the clock (/proc/uptime,
//     read by the shell itself; 1,000 tries should it not read). Its own cgroup is read without a
//     child (`read`, not `grep`): a bound of 300 tries of `grep` and `sleep` took over 20 s on a
//     loaded 2-core VM (2 Dec), where each fork costs tens of milliseconds;
//  2. runs the program as a foreground child, with every stop signal trapped by a no-op: the
//     signals the agent sends to the group reach the program (which gets default dispositions:
//     traps are reset for a child, and a foreground child does not get SIGINT/SIGQUIT ignored),
//     and the keeper lives to see the end;
//     The keeper's own stderr is /dev/null (the program gets the real one, kept on fd 4): dash
//     reports a foreground child killed by a signal ("Terminated", "User defined signal 1") on its
//     stderr, which is the program's log — Keel must not add its own words to a program's output;
//  3. writes the program's status ($?, 128+n for signal n) to fd 3, a file the agent opened
//     (`exit-status`, which it can read whatever user the keeper runs as), and ends the same way
//     the program did: the same code, or the same signal raised on itself.
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';

const KEEPER =
  'cg=$1; shift; exec 4>&2 2>/dev/null; ' +
  'if [ -n "$cg" ]; then read -r t0 l < /proc/uptime; t0=${t0%.*}; i=0; ' +
  'while :; do m=; while read -r l; do [ "$l" = "0::$cg" ] && m=1; done < /proc/self/cgroup; ' +
  '[ -n "$m" ] && break; t=; read -r t l < /proc/uptime; t=${t%.*}; i=$((i+1)); ' +
  '[ $((${t:-0} - ${t0:-0})) -gt 3 ] || [ "$i" -gt 1000 ] && break; sleep 0.01; done; fi; ' +
  'trap : HUP INT QUIT TERM USR1 USR2 ALRM PIPE; ' +
  '(exec "$@" 2>&4 3>&- 4>&-); s=$?; ' +
  'echo "$s" >&3; exec 3>&-; ' +
  'if [ "$s" -gt 128 ] && [ "$s" -lt 160 ]; then trap - $((s-128)); kill -$((s-128)) $$; fi; ' +
  'exit "$s"';

/** The argv that runs `argv` under a keeper (in `cgroup`, a path inside the cgroup2 mount, when given). */
export function keeperArgv(cgroup: string | null, argv: readonly string[]): string[] {
  return ['/bin/sh', '-c', KEEPER, 'keel-keeper', cgroup ?? '', ...argv];
}

const signalNames = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/**
 * The program's end as its keeper wrote it (`exit-status`): its exit code, or the signal that
 * killed it (a shell status of 128+n). Null when nothing was written (the keeper itself was
 * killed, e.g. by the SIGKILL that ends a stop).
 */
export function readExitStatus(path: string): { code: number | null; signal: string | null } | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
  if (!/^\d+$/.test(text)) return null;
  const s = Number(text);
  if (s > 128 && s < 160) return { code: null, signal: signalNames.get(s - 128) ?? `SIG${s - 128}` };
  return { code: s, signal: null };
}
