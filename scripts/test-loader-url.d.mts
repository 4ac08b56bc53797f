// Types of scripts/test-loader-url.mjs for the unit tests that start TypeScript children.
export const tsLoader: string;
