import { readFileSync } from 'node:fs';

// Node has no getpwnam(); Debian keeps system accounts in the files, so read them directly.
function lookup(file: string, name: string, field: number): number | undefined {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const parts = line.split(':');
    if (parts[0] === name && parts[field] !== undefined) return Number(parts[field]);
  }
  return undefined;
}

export function uidOf(user: string): number {
  const uid = lookup('/etc/passwd', user, 2);
  if (uid === undefined) throw new Error(`no user ${user} in /etc/passwd (is postfix installed?)`);
  return uid;
}

export function gidOf(group: string): number {
  const gid = lookup('/etc/group', group, 2);
  if (gid === undefined) throw new Error(`no group ${group} in /etc/group (is postfix installed?)`);
  return gid;
}

export const isRoot = (): boolean => process.getuid?.() === 0;
