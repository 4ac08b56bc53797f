export function unitMallocEnv(unitFile: string, override?: string): Record<string, string>;
