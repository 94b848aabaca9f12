/**
 * SMTP AUTH users: a file of `name:hash` lines (from a Secret), hashes made with scrypt by
 * `mailfleet hash-password`. Verified passwords are remembered for a few minutes under a
 * keyed digest, so an application that opens a connection per message does not pay a full
 * scrypt each time (Dovecot's auth cache does the same).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { ErrorCodes, MailfleetError } from './errors.js';

const scrypt = promisify(crypto.scrypt) as (password: crypto.BinaryLike, salt: crypto.BinaryLike, keylen: number, options: crypto.ScryptOptions) => Promise<Buffer>;

const PARAMS = { N: 16384, r: 8, p: 1 };
const KEY_LENGTH = 32;
const CACHE_MS = 5 * 60_000;

/** `$scrypt$N=16384,r=8,p=1$<salt base64>$<hash base64>` */
export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.randomBytes(16);
  const key = await scrypt(password, salt, KEY_LENGTH, { ...PARAMS, maxmem: 64 * 1024 * 1024 });
  return `$scrypt$N=${PARAMS.N},r=${PARAMS.r},p=${PARAMS.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(hash: string): ParsedHash | undefined {
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(hash.trim());
  if (!m) return undefined;
  return { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]), salt: Buffer.from(m[4]!, 'base64'), key: Buffer.from(m[5]!, 'base64') };
}

export class UserStore {
  private readonly cache = new Map<string, number>();
  private readonly cacheKey = crypto.randomBytes(32);

  private constructor(private readonly users: Map<string, ParsedHash>) {}

  static empty(): UserStore {
    return new UserStore(new Map());
  }

  /** Reads a users file; a malformed line is an error that names its line number. */
  static load(file: string): UserStore {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new MailfleetError(ErrorCodes.USERS_UNREADABLE, `cannot read users file ${file}: ${(err as Error).message}`, 'mount the users Secret, or fix auth.usersFile');
    }
    const users = new Map<string, ParsedHash>();
    text.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim() || line.trimStart().startsWith('#')) return;
      const colon = line.indexOf(':');
      const parsed = colon > 0 ? parseHash(line.slice(colon + 1)) : undefined;
      if (!parsed) {
        throw new MailfleetError(ErrorCodes.USERS_UNREADABLE, `${file} line ${i + 1} is not "name:$scrypt$..."`, 'make entries with `mailfleet hash-password`');
      }
      users.set(line.slice(0, colon), parsed);
    });
    return new UserStore(users);
  }

  get size(): number {
    return this.users.size;
  }

  async verify(username: string, password: string, now = Date.now()): Promise<boolean> {
    const entry = this.users.get(username);
    if (!entry) {
      // Spend the same time as a real check so user names cannot be probed by timing.
      await scrypt(password, crypto.randomBytes(16), KEY_LENGTH, { N: PARAMS.N, r: PARAMS.r, p: PARAMS.p, maxmem: 64 * 1024 * 1024 });
      return false;
    }
    const digest = crypto.createHmac('sha256', this.cacheKey).update(username).update('\0').update(password).digest('base64');
    const until = this.cache.get(digest);
    if (until !== undefined && until > now) return true;
    const key = await scrypt(password, entry.salt, entry.key.length, { N: entry.N, r: entry.r, p: entry.p, maxmem: 256 * 1024 * 1024 });
    const ok = crypto.timingSafeEqual(key, entry.key);
    if (ok) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(digest, now + CACHE_MS);
    }
    return ok;
  }
}
