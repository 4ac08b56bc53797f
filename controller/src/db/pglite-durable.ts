// Makes the embedded PGlite database keep what it acknowledges. Out of the box it does not: its
// default start parameters include `-F` (fsync off), and even without `-F` nothing reaches the disk,
// because its Node filesystem layer (Emscripten's NODEFS) has no fsync operation: PostgreSQL's
// fsync() returns success without a syscall, and fdatasync() (the WAL's default sync method on
// Linux) is a no-op stub. Verified under `strace -f -e trace=fsync,fdatasync`: zero syncs per
// commit by default, one fsync per commit with what this file sets up (docs/operations.md).
//
// So the embedded driver starts PostgreSQL without `-F`, with `wal_sync_method=fsync` (the path
// that reaches NODEFS), and gives NODEFS an fsync that calls the real fsync(2) on the file.
import { fsyncSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';

/** PGlite's start parameters without `-F`, with the WAL synced through fsync(). */
export const durableStartParams: string[] = [
  ...PGlite.defaultStartParams.filter((p) => p !== '-F'),
  '-c',
  'fsync=on',
  '-c',
  'wal_sync_method=fsync',
];

/** WASI's errno for an I/O error (what Emscripten's fd_sync hands back to libc). */
const WASI_EIO = 29;

/** The part of an Emscripten stream NODEFS's operations see: the host file descriptor. */
interface NodeStream {
  nfd?: number;
}

/**
 * PGlite's Node filesystem with a working fsync: every fsync() PostgreSQL issues (WAL at commit,
 * data files at checkpoint) becomes fsync(2) on the host file.
 */
export class DurableNodeFS extends NodeFS {
  /** How many fsync(2) calls went to the disk (tests read it). */
  fsyncs = 0;

  override async init(...args: Parameters<NodeFS['init']>): ReturnType<NodeFS['init']> {
    const result = await super.init(...args);
    const preRun = [...(result.emscriptenOpts.preRun ?? [])];
    preRun.push((mod: { NODEFS: { stream_ops: Record<string, unknown> } }) => {
      mod.NODEFS.stream_ops.fsync = (stream: NodeStream): number => {
        if (stream.nfd === undefined) return 0;
        try {
          fsyncSync(stream.nfd);
        } catch {
          // EIO to PostgreSQL, which then stops rather than trust pages the disk may not hold.
          return WASI_EIO;
        }
        this.fsyncs++;
        return 0;
      };
    });
    return { emscriptenOpts: { ...result.emscriptenOpts, preRun } as typeof result.emscriptenOpts };
  }
}
