// A shared wall clock for relative times and ticking uptimes: one interval for the whole page,
// running only while something reactive reads it.
import { createSubscriber } from 'svelte/reactivity';

class Clock {
  #now = Date.now();
  #active = false;
  #subscribe = createSubscriber((update) => {
    this.#active = true;
    this.#now = Date.now();
    const timer = setInterval(() => {
      this.#now = Date.now();
      update();
    }, 1000);
    return () => {
      clearInterval(timer);
      this.#active = false;
    };
  });

  /** The current time in epoch ms; re-read every second by templates and effects that use it. */
  get now(): number {
    this.#subscribe();
    return this.#active ? this.#now : Date.now();
  }
}

/** The console's clock. */
export const clock = new Clock();
