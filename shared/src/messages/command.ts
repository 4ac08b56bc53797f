// Fragments of "a command to run", shared by the process spec (messages/processes.ts) and a job's
// command (messages/jobs.ts): the working directory, the environment and the user to run as. Each
// message keeps its own argv (their limits differ) and says whether a field is optional.
import { z } from 'zod';
import { lazySchema } from '../definitions.ts';

/** Text without NUL (argv, env and paths cannot hold one); a builder, to call inside a lazy schema. */
export const noNul = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes('\u0000'), 'must not contain NUL');

/** A command's working directory: an absolute path. */
export const commandCwdSchema = lazySchema(() =>
  noNul(4096).refine((s) => s.startsWith('/'), 'must be an absolute path'),
);

/** A command's environment: variable name -> value. */
export const commandEnvSchema = lazySchema(() =>
  z.record(
    z
      .string()
      .min(1)
      .max(256)
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
    noNul(32_768),
  ),
);

/** The user a command runs as (a user name); needs an agent running as root. */
export const commandUserSchema = lazySchema(() =>
  z.string().regex(/^[a-z_][a-z0-9_.-]{0,31}\$?$/i, 'a user name'),
);
