// The console's view of roles: the same order the controller enforces (viewer < operator < admin <
// owner), so a page or link an answer would refuse with 403 is not offered at all.
import type { Role, User } from './types.ts';

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2, owner: 3 };

/** True when `user` has at least role `min`, e.g. `hasRole(user, 'admin')` for an owner too. */
export function hasRole(user: Pick<User, 'role'> | null | undefined, min: Role): boolean {
  return user != null && RANK[user.role] >= RANK[min];
}
