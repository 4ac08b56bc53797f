// Types of scripts/test-slots.mjs for test/test-slots.test.ts.
export function startTimeOf(pid: number): string;
export function alive(pid: number, start: string): boolean;
export interface MachineSlots {
  usage(): { load: number; places: number; slots: number };
  take(job: string, load: number, options?: { idle?: boolean; over?: number }): boolean;
  free(job: string): void;
  freeAll(): void;
}
export function machineSlots(options: {
  dir: string;
  budget: number;
  places: number;
  pid?: number;
}): MachineSlots;
