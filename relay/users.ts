/**
 * SMTP AUTH users: a file of `name:hash` lines (from a Secret), hashes made with scrypt by
 * `mailfleet hash-password`. Verified passwords are remembered for a few minutes under a
 * keyed digest, so an application that opens a connection per message does not pay a full
 * scrypt each time (Dovecot's auth cache does the same).
 *
 * Failed AUTH is bounded here too: a HashGate lets only a few scrypt runs go at once (each
 * holds a thread of libuv's pool, which the spool's writes and fsyncs need), and AuthThrottle
 * remembers recent failures per client address and per user name (Postfix's anvil,
 * fail2ban's idea), so a guesser is refused before any hashing.
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

  /**
   * Whether the password is the user's; `busy` when the gate has no room for another scrypt
   * (the caller answers "try again later"). A remembered password needs no room.
   */
  async verify(username: string, password: string, now = Date.now(), gate?: HashGate): Promise<boolean | 'busy'> {
    const hash = (p: () => Promise<Buffer>) => (gate ? gate.run(p) : p());
    const entry = this.users.get(username);
    if (!entry) {
      // Spend the same time as a real check so user names cannot be probed by timing.
      const spent = await hash(() => scrypt(password, crypto.randomBytes(16), KEY_LENGTH, { N: PARAMS.N, r: PARAMS.r, p: PARAMS.p, maxmem: 64 * 1024 * 1024 }));
      return spent === undefined ? 'busy' : false;
    }
    const digest = crypto.createHmac('sha256', this.cacheKey).update(username).update('\0').update(password).digest('base64');
    const until = this.cache.get(digest);
    if (until !== undefined && until > now) return true;
    const key = await hash(() => scrypt(password, entry.salt, entry.key.length, { N: entry.N, r: entry.r, p: entry.p, maxmem: 256 * 1024 * 1024 }));
    if (key === undefined) return 'busy';
    const ok = crypto.timingSafeEqual(key, entry.key);
    if (ok) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(digest, now + CACHE_MS);
    }
    return ok;
  }
}

/**
 * At most `concurrency` hashes at once and `queue` waiting; run() gives undefined at once when
 * both are full. Limits are read on every call, so a config reload changes them.
 */
export class HashGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limits: () => { concurrency: number; queue: number }) {}

  async run<T>(work: () => Promise<T>): Promise<T | undefined> {
    const { concurrency, queue } = this.limits();
    if (this.running >= concurrency) {
      if (this.waiting.length >= queue) return undefined;
      // The slot is handed over by the run that ends (running stays counted).
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await work();
    } finally {
      const next = this.running <= this.limits().concurrency ? this.waiting.shift() : undefined;
      if (next) next();
      else this.running--;
    }
  }

  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }
}

export interface ThrottleLimits {
  /** Failures from one client address in a window before its AUTH is refused. */
  perClient: number;
  /** Failures for one user name in a window before AUTH as that user is refused from addresses it has not logged in from. */
  perUser: number;
  windowMs: number;
}

/** Failures counted in a fixed window that starts with the first one. */
interface Window {
  start: number;
  failures: number;
}

/** Entries kept per map: old ones go first, so memory stays bounded whatever a flood sends. */
const MAX_ENTRIES = 10_000;

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value!);
  map.set(key, value);
}

/**
 * Recent AUTH failures per client address and per user name; time is an argument.
 *
 * A lock on a user name alone would let anyone lock an application out by failing as it, so
 * the per-user lock spares addresses the user logged in from within the window (the
 * application's pods): strangers are refused, the application goes on.
 */
export class AuthThrottle {
  private readonly clients = new Map<string, Window>();
  private readonly users = new Map<string, Window>();
  private readonly knownGood = new Map<string, number>();

  constructor(private readonly limits: () => ThrottleLimits) {}

  /** Why AUTH from this address as this user is refused without a check, or undefined. */
  locked(client: string, user: string, now: number): 'client' | 'user' | undefined {
    const { perClient, perUser, windowMs } = this.limits();
    if (this.count(this.clients, client, now, windowMs) >= perClient) return 'client';
    if (this.count(this.users, user, now, windowMs) >= perUser && !this.isKnownGood(client, user, now, windowMs)) return 'user';
    return undefined;
  }

  failed(client: string, user: string, now: number): void {
    const { windowMs } = this.limits();
    for (const [map, key] of [
      [this.clients, client],
      [this.users, user],
    ] as const) {
      const w = map.get(key);
      if (w && now - w.start < windowMs) w.failures++;
      else remember(map, key, { start: now, failures: 1 });
    }
  }

  succeeded(client: string, user: string, now: number): void {
    remember(this.knownGood, `${user}\0${client}`, now);
  }

  private count(map: Map<string, Window>, key: string, now: number, windowMs: number): number {
    const w = map.get(key);
    if (!w) return 0;
    if (now - w.start >= windowMs) {
      map.delete(key);
      return 0;
    }
    return w.failures;
  }

  private isKnownGood(client: string, user: string, now: number, windowMs: number): boolean {
    const at = this.knownGood.get(`${user}\0${client}`);
    return at !== undefined && now - at < windowMs;
  }
}
