/**
 * Who is calling: a session (cookie, signed in with email and password through
 * passport-local) or an API key (`Authorization: Bearer KEYID.SECRET`, `api` scope).
 * Cookie-authenticated mutations must also carry the session's CSRF token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import passport from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import type { Accounts, User } from '../accounts/index.ts';
import { ipcolaError } from '../errors/index.ts';

declare module 'express-session' {
  interface SessionData {
    /** Sent back as X-CSRF-Token by cookie-authenticated mutations. */
    csrfToken?: string;
  }
}

export type Caller =
  | { kind: 'session'; accountId: string; user: User }
  /** `secret` is the one the caller presented (kept for this request only: proxy lists print it). */
  | { kind: 'key'; accountId: string; keyId: string; secret: string };

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
// Key ids are lowercase letters and digits, secrets letters and digits (bounded here,
// exact shape checked by verifyKey).
const BEARER = /^Bearer +([a-z0-9]{1,32})\.([A-Za-z0-9]{1,128}) *$/i;

/** A passport instance of its own (not the global one): one per API app. */
export function createAuthenticator(accounts: Accounts): passport.Authenticator {
  const authenticator = new passport.Passport();
  authenticator.use(
    new LocalStrategy(
      { usernameField: 'email', passwordField: 'password', session: false },
      (email, password, done) => {
        accounts.login(email, password).then((user) => done(null, user ?? false), done);
      },
    ),
  );
  // The session holds the user id and nothing else; the user is read fresh per request.
  authenticator.serializeUser((user, done) => done(null, (user as User).id));
  authenticator.deserializeUser((id: string, done) => {
    accounts.getUser(id).then((user) => done(null, user ?? false), done);
  });
  return authenticator;
}

/**
 * Signs the user in on a new session (passport regenerates it: a session id planted
 * before sign-in is discarded) with a new CSRF token, which it returns.
 */
export async function startSession(req: Request, user: User): Promise<string> {
  await new Promise<void>((resolve, reject) =>
    req.login(user, (error) => (error ? reject(error) : resolve())),
  );
  const token = randomBytes(32).toString('base64url');
  req.session.csrfToken = token;
  return token;
}

/** Refuses callers without a valid session or API key; records who the caller is. */
export function requireCaller(accounts: Accounts): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const authorization = req.headers.authorization;
    if (authorization !== undefined) {
      // An Authorization header decides alone: no falling back to the cookie.
      const match = BEARER.exec(authorization);
      if (!match) {
        throw ipcolaError('unauthorized', 'Authorization must be "Bearer KEYID.SECRET"');
      }
      const key = await accounts.verifyKey(match[1] as string, match[2] as string);
      if (!key) throw ipcolaError('unauthorized', 'The API key is not valid');
      if (!key.scopes.includes('api')) {
        throw ipcolaError('forbidden', 'This API key lacks the api scope');
      }
      setCaller(res, {
        kind: 'key',
        accountId: key.accountId,
        keyId: key.id,
        secret: match[2] as string,
      });
      return next();
    }
    const user = req.user as User | undefined;
    if (!user) {
      throw ipcolaError(
        'unauthorized',
        'Sign in, or send an API key as "Authorization: Bearer KEYID.SECRET"',
      );
    }
    if (!SAFE_METHODS.has(req.method) && !csrfTokenMatches(req)) {
      throw ipcolaError('csrf_failed');
    }
    setCaller(res, { kind: 'session', accountId: user.accountId, user });
    next();
  };
}

export function callerOf(res: Response): Caller {
  const caller = res.locals.caller as Caller | undefined;
  if (!caller) throw new Error('callerOf: the route has no requireCaller in front of it');
  return caller;
}

function setCaller(res: Response, caller: Caller): void {
  res.locals.caller = caller;
}

function csrfTokenMatches(req: Request): boolean {
  const offered = req.headers['x-csrf-token'];
  const expected = req.session?.csrfToken;
  if (typeof offered !== 'string' || typeof expected !== 'string') return false;
  // Digests have equal lengths, so the comparison is constant-time whatever was sent.
  return timingSafeEqual(sha256(offered), sha256(expected));
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
