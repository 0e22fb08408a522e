import { hash } from 'node:crypto';
import { plainAddress } from '@ipcola/shared/addresses';
import ipaddr from 'ipaddr.js';
import type { AuthFailureLimit } from '../auth-failures/index.ts';
import { type IPColaError, ipcolaError } from '../errors/index.ts';
import {
  type ProxyCredentials,
  parseBasicProxyAuthorization,
  parseProxyUsername,
  parseUsernameParameters,
} from './credentials.ts';

/** What the gateway needs to know of an API key. */
export interface ProxyKey {
  id: string;
  accountId: string;
  scopes: readonly string[];
  maxConcurrency: number | null;
  /** Countries the key may target; it must then name one. Null: any. */
  allowedCountries?: readonly string[] | null;
  /** CIDRs the key may be used from. Null: anywhere. */
  clientAllowlist?: readonly string[] | null;
}

/** A key that connections without credentials from one of its client ranges are. */
export interface PasswordlessKey extends ProxyKey {
  /** Username parameters without the key id (`country-us`), '' for none. */
  defaultTargeting: string;
}

/** Where a held connection comes from and what it targets, for enforce(). */
export interface HeldFrom {
  address: string | undefined;
  country: string | undefined;
}

export interface KeyRules {
  maxConcurrency: number | null;
  allowedCountries: readonly string[] | null;
  clientAllowlist: readonly string[] | null;
}

export interface Admission {
  key: ProxyKey;
  credentials: ProxyCredentials;
}

export interface AccessOptions {
  /** The key when id and secret match a live key, else null. */
  verifyKey(keyId: string, secret: string): Promise<ProxyKey | null>;
  /** How long a verification is reused: bounds how late a revocation takes effect. */
  cacheTtlMs: number;
  /**
   * How long after the database last answered for a key (or an address) that answer still
   * admits it while the database cannot be asked; past it, or for a key it never answered
   * for, connections are refused with service_unavailable. 0: never.
   */
  staleForMs?: number;
  /** Told each time a last answer stands in for the database (a log line, throttled). */
  onStale?: (what: 'key' | 'address', error: unknown) => void;
  /** Further admission checks of a verified key (credit, caps); throws the refusal. */
  checkKey?: (key: ProxyKey) => Promise<void>;
  /** Failed sign-ins per client address; past the allowance the address is refused. */
  failures?: AuthFailureLimit;
  /**
   * The live key one of whose password-less ranges holds the address, else null. Cached
   * per address for cacheTtlMs like verifications; none: every connection needs credentials.
   */
  passwordlessKey?: (address: string) => Promise<PasswordlessKey | null>;
  now?: () => number;
}

export interface Access {
  /** From a `Proxy-Authorization` header value, for a client at `address`. */
  admitHeader(header: string | undefined, address: string | undefined): Promise<Admission>;
  /**
   * From a username and password (SOCKS5), for a client at `address`. An empty password
   * from a password-less range of the key the username names admits that key with the
   * username's targeting.
   */
  admit(username: string, password: string, address: string | undefined): Promise<Admission>;
  /**
   * A client that presents no credentials at all: the key whose password-less range holds
   * its address, with the key's default targeting, or null when there is none (the caller
   * then asks for credentials). The key's own checks (allow-list, countries, credit) apply.
   */
  admitWithoutCredentials(address: string | undefined): Promise<Admission | null>;
  /**
   * Takes one of the key's concurrent-connection slots for as long as a connection
   * (or a forwarded request) is open; throws rate_limited when none is left. `cut`
   * closes that connection when the key loses its right to it (revoked, out of
   * credit). The returned release is safe to call twice.
   */
  hold(key: ProxyKey, cut: () => void, from?: HeldFrom): () => void;
  /**
   * Applies a key's current rules to its open connections: cuts those from outside its
   * allow-list or to a country it no longer allows, and the newest beyond its
   * concurrency. Returns how many were cut.
   */
  enforce(keyId: string, rules: KeyRules): number;
  /** Open connections per key on this gateway. */
  openConnections(keyId: string): number;
  /** Keys with connections open on this gateway. */
  keysInUse(): string[];
  /** Closes the key's open connections (only those admitted before `admittedBefore`, epoch ms, when given); returns how many. */
  cut(keyId: string, admittedBefore?: number): number;
}

const CACHE_LIMIT = 10_000;

/**
 * Authentication and per-key admission for every proxy protocol: parses the username,
 * verifies the secret (cached briefly so the hot path rarely reaches the database) and
 * holds a concurrency slot per open connection.
 */
export function createAccess(options: AccessOptions): Access {
  const now = options.now ?? Date.now;
  const staleForMs = options.staleForMs ?? 0;
  /** Whether an answer the database gave at `at` may still stand in for it. */
  const usable = (at: number) => now() - at <= staleForMs;
  const cache = new Map<string, { key: ProxyKey | null; until: number; at: number }>();
  /** The cut function and admission time of every open connection, per key. */
  const open = new Map<
    string,
    Set<{
      cut: () => void;
      admittedAt: number;
      from: HeldFrom | undefined;
      /** Admitted for its address, without a secret: held only while a range holds it. */
      passwordless: boolean;
    }>
  >();
  /** The key objects password-less lookups answered: hold() tells those admissions by them. */
  const passwordlessAdmitted = new WeakSet<ProxyKey>();

  const verify = async (keyId: string, secret: string): Promise<ProxyKey | null> => {
    // The cache key holds a digest of the secret, never the secret, and a wrong secret
    // can only ever hit its own (negative) entry. One-shot hash(): half the time of a
    // Hash object on every new connection.
    const cacheKey = `${keyId}:${hash('sha256', secret, 'base64url')}`;
    const hit = cache.get(cacheKey);
    if (hit && hit.until > now()) return hit.key;
    let key: ProxyKey | null;
    try {
      key = await options.verifyKey(keyId, secret);
    } catch (error) {
      // The database is down: the last answer stands for a bounded time (README, "When
      // PostgreSQL or Redis is down"); a key it never answered for cannot be judged.
      if (hit && usable(hit.at)) {
        options.onStale?.('key', error);
        return hit.key;
      }
      throw unavailable('the key cannot be checked now', error);
    }
    remember(cache, cacheKey, { key, until: now() + options.cacheTtlMs, at: now() });
    return key;
  };

  /**
   * Per client address: the lookup (shared by the connections that arrive while it runs,
   * so a burst from one address is one query) and until when its answer is reused.
   */
  const passwordless = new Map<string, PasswordlessEntry>();
  /** The password-less key of the address, as the database said at most cacheTtlMs ago. */
  const passwordlessKeyOf = async (
    address: string | undefined,
  ): Promise<PasswordlessKey | null> => {
    const { passwordlessKey } = options;
    if (!passwordlessKey || address === undefined) return null;
    let hit = passwordless.get(address);
    if (!hit || hit.until <= now()) {
      const previous = hit?.answer;
      const entry: PasswordlessEntry = {
        key: Promise.resolve(null),
        until: now() + options.cacheTtlMs,
        answer: previous,
      };
      entry.key = passwordlessKey(address).then(
        (key) => {
          entry.answer = { key, at: now() };
          return key;
        },
        (error: unknown) => {
          // The database is down: its last answer for the address stands for a bounded
          // time; without one, the failed lookup is not remembered and the next asks again.
          if (previous && usable(previous.at)) {
            options.onStale?.('address', error);
            return previous.key;
          }
          if (passwordless.get(address) === entry) passwordless.delete(address);
          throw unavailable('the client address cannot be checked now', error);
        },
      );
      remember(passwordless, address, entry);
      hit = entry;
    }
    const key = await hit.key;
    if (!key?.scopes.includes('proxy')) return null;
    passwordlessAdmitted.add(key);
    return key;
  };

  const { failures } = options;
  const refuseBlocked = (from: string) => {
    const blocked = failures?.blockedFor(from) ?? 0;
    if (blocked > 0) throw tooManyFailures(blocked);
  };
  const admit = async (
    username: string,
    password: string,
    address: string | undefined,
  ): Promise<Admission> => {
    const from = address ?? 'unknown';
    refuseBlocked(from);
    const credentials = parseProxyUsername(username);
    let key: ProxyKey | null = null;
    if (password === '') {
      const own = await passwordlessKeyOf(address);
      if (own?.id === credentials.keyId) key = own;
    }
    key ??= await verify(credentials.keyId, password);
    if (!key?.scopes.includes('proxy')) {
      const nowBlocked = (await failures?.recordFailure(from)) ?? 0;
      throw nowBlocked > 0 ? tooManyFailures(nowBlocked) : refusal('auth_failed');
    }
    return admitKey(key, credentials, address);
  };

  const admitWithoutCredentials = async (
    address: string | undefined,
  ): Promise<Admission | null> => {
    const key = await passwordlessKeyOf(address);
    if (!key) return null;
    refuseBlocked(address ?? 'unknown');
    const { targeting, session } = parseUsernameParameters(key.defaultTargeting);
    return admitKey(key, { keyId: key.id, targeting, session }, address);
  };

  /** The checks every admission passes once the key is known. */
  const admitKey = async (
    key: ProxyKey,
    credentials: ProxyCredentials,
    address: string | undefined,
  ): Promise<Admission> => {
    const from = address ?? 'unknown';
    if (key.clientAllowlist && !inAllowlist(address, key.clientAllowlist)) {
      throw ipcolaError('ip_not_allowed', `this key is not to be used from ${from}`);
    }
    const { country } = credentials.targeting;
    if (key.allowedCountries && !(country && key.allowedCountries.includes(country))) {
      throw ipcolaError(
        'bad_params',
        `this key must target one of its countries: ${key.allowedCountries.join(', ')}`,
      );
    }
    await options.checkKey?.(key);
    return { key, credentials };
  };

  const hold = (key: ProxyKey, cut: () => void, from?: HeldFrom): (() => void) => {
    let slots = open.get(key.id);
    if (key.maxConcurrency !== null && (slots?.size ?? 0) >= key.maxConcurrency) {
      throw ipcolaError('rate_limited', `the key allows ${key.maxConcurrency} open connections`);
    }
    if (!slots) {
      slots = new Set();
      open.set(key.id, slots);
    }
    const slot = { cut, admittedAt: now(), from, passwordless: passwordlessAdmitted.has(key) };
    slots.add(slot);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const held = open.get(key.id);
      held?.delete(slot);
      if (held?.size === 0) open.delete(key.id);
    };
  };

  return {
    admit,
    admitWithoutCredentials,
    async admitHeader(header, address) {
      if (header === undefined || header.trim() === '') {
        const admission = await admitWithoutCredentials(address);
        if (admission) return admission;
      }
      const { username, password } = parseBasicProxyAuthorization(header);
      return admit(username, password, address);
    },
    hold,
    openConnections: (keyId) => open.get(keyId)?.size ?? 0,
    keysInUse: () => [...open.keys()],
    enforce(keyId, rules) {
      const held = open.get(keyId);
      if (!held) return 0;
      // A range taken from the key (or the key disabled) ends its password-less connections
      // too: each is looked up again (cached per address for cacheTtlMs) and cut if its
      // address is no longer this key's. Asynchronous, so not in the count returned.
      for (const slot of held) {
        if (!slot.passwordless || slot.from?.address === undefined) continue;
        passwordlessKeyOf(slot.from.address).then(
          (key) => {
            if (key?.id !== keyId) slot.cut();
          },
          () => {}, // the database did not answer: judged again at the next check
        );
      }
      // Runs for every key in use every check: most keys have nothing to cut.
      const restricted = rules.clientAllowlist !== null || rules.allowedCountries !== null;
      if (!restricted && (rules.maxConcurrency === null || held.size <= rules.maxConcurrency)) {
        return 0;
      }
      const doomed: Array<{ cut: () => void }> = [];
      let staying = 0;
      // A Set iterates in insertion order, oldest admission first: the newest end up beyond the cap.
      for (const slot of held) {
        const { from } = slot;
        const outside =
          from !== undefined &&
          ((rules.clientAllowlist !== null && !inAllowlist(from.address, rules.clientAllowlist)) ||
            (rules.allowedCountries !== null &&
              !(from.country && rules.allowedCountries.includes(from.country))));
        if (outside) doomed.push(slot);
        else if (rules.maxConcurrency !== null && ++staying > rules.maxConcurrency)
          doomed.push(slot);
      }
      // Cut after the walk: a cut releases its slot, which deletes it from the set.
      for (const slot of doomed) slot.cut();
      return doomed.length;
    },
    cut(keyId, admittedBefore = Number.POSITIVE_INFINITY) {
      const slots = [...(open.get(keyId) ?? [])].filter((slot) => slot.admittedAt < admittedBefore);
      for (const slot of slots) slot.cut();
      return slots.length;
    },
  };
}

/** A password-less lookup of one address: under way or done, and the last answer it gave. */
interface PasswordlessEntry {
  key: Promise<PasswordlessKey | null>;
  until: number;
  answer: { key: PasswordlessKey | null; at: number } | undefined;
}

/**
 * Sets an entry as the newest, dropping the oldest past CACHE_LIMIT: a full cache keeps
 * the answers of the keys in use, which an outage needs, rather than starting empty.
 */
function remember<V>(cache: Map<string, V>, id: string, value: V): void {
  cache.delete(id);
  if (cache.size >= CACHE_LIMIT) {
    const oldest = cache.keys().next();
    if (!oldest.done) cache.delete(oldest.value);
  }
  cache.set(id, value);
}

function unavailable(message: string, cause: unknown): IPColaError {
  return ipcolaError('service_unavailable', `${message}: the database is unavailable`, { cause });
}

function tooManyFailures(blockedMs: number): IPColaError {
  const seconds = Math.ceil(blockedMs / 1000);
  return ipcolaError(
    'rate_limited',
    `too many failed sign-ins from this address: refused for ${seconds} s`,
    { retryAfterSeconds: seconds },
  );
}

function refusal(code: 'auth_failed'): IPColaError {
  return ipcolaError(code, 'unknown key id or wrong secret');
}

/** Whether the client's address is inside one of the CIDRs (IPv4-mapped IPv6 counts as IPv4). */
function inAllowlist(address: string | undefined, cidrs: readonly string[]): boolean {
  const parsed = address === undefined ? null : plainAddress(address);
  if (!parsed) return false;
  return cidrs.some((cidr) => {
    try {
      const range = ipaddr.parseCIDR(cidr);
      return parsed.kind() === range[0].kind() && parsed.match(range);
    } catch {
      return false;
    }
  });
}
