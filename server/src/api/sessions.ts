/**
 * /v1/auth/signup, /v1/auth/login, /v1/auth/logout and /v1/me: accounts and the sessions
 * of their users. Password checks (log-in, sign-up retries) are limited per client address.
 */

import type { components } from '@ipcola/openapi';
import express, { type Request, type RequestHandler, type Router } from 'express';
import type passport from 'passport';
import type { Account, Accounts, User } from '../accounts/index.ts';
import type { AuthFailureLimit } from '../auth-failures/index.ts';
import { ipcolaError, isIPColaError } from '../errors/index.ts';
import type { SignupLimit } from '../signup-limit/index.ts';
import type { Queryable } from '../store/index.ts';
import { callerOf, startSession } from './auth.ts';
import { idempotencyKeyOf, signupRetries } from './idempotency.ts';
import { clientAddress, jsonBody, moneyView, onlyMethods, requiredBody } from './requests.ts';
import type { BodyValidator } from './validate.ts';

type Schemas = components['schemas'];

export const SESSION_COOKIE = 'ipcola.sid';

export interface SessionsOptions {
  accounts: Pick<Accounts, 'signup' | 'login' | 'getAccount'>;
  /** Where sign-up retries (Idempotency-Key) are remembered. */
  database: Queryable;
  bodies: BodyValidator;
  authenticator: passport.Authenticator;
  caller: RequestHandler;
  loginFailures?: AuthFailureLimit;
  signups?: SignupLimit;
}

export function sessionsRouter(options: SessionsOptions): Router {
  const { accounts, bodies } = options;
  const router = express.Router();
  const signups = signupRetries(options.database);
  const refuseIfBlocked = (address: string) => {
    const blocked = options.loginFailures?.blockedFor(address) ?? 0;
    if (blocked > 0) throw tooManyLogins(blocked);
  };
  /** Counts a wrong password; resolves with how long the address is now blocked (0: not). */
  const failedSignIn = async (address: string) =>
    (await options.loginFailures?.recordFailure(address)) ?? 0;

  const signIn = async (req: Request, user: User): Promise<Schemas['SessionStarted']> => {
    const account = await accounts.getAccount(user.accountId);
    if (!account) throw ipcolaError('unauthorized', 'Wrong email or password');
    const csrfToken = await startSession(req, user);
    return { account: accountView(account), user: userView(user), csrf_token: csrfToken };
  };

  router
    .route('/auth/signup')
    .post(jsonBody, async (req, res) => {
      const body = bodies.check('SignupRequest', requiredBody(req));
      const retryKey = idempotencyKeyOf(req);
      const waitMs = (await options.signups?.take(clientAddress(req))) ?? 0;
      if (waitMs > 0) {
        const seconds = Math.ceil(waitMs / 1000);
        throw ipcolaError(
          'rate_limited',
          `Too many sign-ups from this address: try again in ${seconds} s`,
          { retryAfterSeconds: seconds },
        );
      }
      let created: Awaited<ReturnType<Accounts['signup']>>;
      try {
        created = await accounts.signup(
          body.email,
          body.password,
          retryKey === undefined
            ? undefined
            : (tx, accountId) => signups.remember(tx, accountId, retryKey, body.email),
        );
      } catch (error) {
        if (retryKey === undefined || !isIPColaError(error) || error.code !== 'email_taken') {
          throw error;
        }
        // Checking the password costs what a log-in costs, so it is limited like one.
        const address = clientAddress(req);
        refuseIfBlocked(address);
        const user = await accounts.login(body.email, body.password);
        if (!user) {
          const blockedNow = await failedSignIn(address);
          if (blockedNow > 0) throw tooManyLogins(blockedNow);
        }
        // Wrong password, or no signup with this key: the email is simply taken.
        if (!user || !(await signups.isRetry(user.accountId, retryKey, body.email))) throw error;
        res.setHeader('Idempotent-Replayed', 'true');
        res.status(201).json(await signIn(req, user));
        return;
      }
      const csrfToken = await startSession(req, created.user);
      res.status(201).json({
        account: accountView(created.account),
        user: userView(created.user),
        csrf_token: csrfToken,
      } satisfies Schemas['SessionStarted']);
    })
    .all(onlyMethods('POST'));

  router
    .route('/auth/login')
    .post(jsonBody, (req, res, next) => {
      bodies.check('LoginRequest', requiredBody(req));
      // Retrying a log-in is safe as it is (each answer is a new session): the key is only checked.
      idempotencyKeyOf(req);
      const address = clientAddress(req);
      refuseIfBlocked(address);
      const verdict = (error: unknown, user: User | false) => {
        if (error) return next(error);
        if (!user) {
          const refuse = (blockedMs: number) =>
            next(
              blockedMs > 0
                ? tooManyLogins(blockedMs)
                : ipcolaError('unauthorized', 'Wrong email or password'),
            );
          failedSignIn(address).then(refuse, next);
          return;
        }
        signIn(req, user).then((answer) => res.json(answer), next);
      };
      options.authenticator.authenticate('local', { session: false }, verdict)(req, res, next);
    })
    .all(onlyMethods('POST'));

  router
    .route('/auth/logout')
    .post(options.caller, (req, res, next) => {
      idempotencyKeyOf(req); // signing out twice is signing out: the key is only checked
      if (callerOf(res).kind === 'key') {
        res.status(204).end();
        return;
      }
      req.session.destroy((error) => {
        if (error) return next(error);
        res.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax' });
        res.status(204).end();
      });
    })
    .all(onlyMethods('POST'));

  router
    .route('/me')
    .get(options.caller, async (req, res) => {
      const who = callerOf(res);
      const account = await accounts.getAccount(who.accountId);
      if (!account) throw ipcolaError('unauthorized', 'The account no longer exists');
      const me: Schemas['Me'] = { account: accountView(account), user: null };
      if (who.kind === 'session') {
        me.user = userView(who.user);
        if (req.session.csrfToken) me.csrf_token = req.session.csrfToken;
      }
      res.json(me);
    })
    .all(onlyMethods('GET', 'HEAD'));

  return router;
}

function tooManyLogins(blockedMs: number) {
  const seconds = Math.ceil(blockedMs / 1000);
  return ipcolaError(
    'rate_limited',
    `Too many failed log-ins from this address: try again in ${seconds} s`,
    { retryAfterSeconds: seconds },
  );
}

function accountView(account: Account): Schemas['Account'] {
  return {
    id: account.id,
    balance: moneyView(account.currency, account.balanceMicro),
    created_at: account.createdAt.toISOString(),
  };
}

function userView(user: User): Schemas['User'] {
  return { id: user.id, email: user.email };
}
