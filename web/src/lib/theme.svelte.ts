// Dark/light theme: the choice lives in localStorage ('keel.theme'); with none saved the system
// preference wins, also when it changes while the console is open (a system that turns light at
// sunrise). app.html applies it before first paint, this keeps it in sync afterwards.
export type Theme = 'dark' | 'light';

const KEY = 'keel.theme';

function initial(): Theme {
  const set = document.documentElement.dataset.theme;
  if (set === 'dark' || set === 'light') return set;
  return matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark';
}

/** The saved choice, if any. */
function saved(): Theme | null {
  try {
    const t = localStorage.getItem(KEY);
    return t === 'dark' || t === 'light' ? t : null;
  } catch {
    return null;
  }
}

class ThemeState {
  current = $state<Theme>(typeof document === 'undefined' ? 'dark' : initial());

  constructor() {
    if (typeof document === 'undefined') return;
    // Follow the system's scheme while nothing is saved; a saved choice wins.
    matchMedia('(prefers-color-scheme: light)').addEventListener('change', (e) => {
      if (saved()) return;
      this.current = e.matches ? 'light' : 'dark';
      document.documentElement.dataset.theme = this.current;
    });
  }

  /** Switch to `theme` and remember it. */
  set(theme: Theme): void {
    this.current = theme;
    document.documentElement.dataset.theme = theme;
    try {
      localStorage.setItem(KEY, theme);
    } catch {
      // Private mode or storage disabled: the theme still applies for this page.
    }
  }

  toggle(): void {
    this.set(this.current === 'dark' ? 'light' : 'dark');
  }
}

/** The console's theme. */
export const theme = new ThemeState();
