// Ambient types for SvelteKit. The console is a client-only SPA, so App.Locals and friends stay empty.
declare global {
  namespace App {
    interface Error {
      message: string;
      code?: string;
    }
  }
}

export {};
