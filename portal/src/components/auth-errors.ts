import { ApiError } from '../api/client.ts';

export type Mode = 'login' | 'signup';

/** What a person reads for a refused sign-in or sign-up. */
export function authErrorMessage(error: unknown, mode: Mode): string {
  if (!(error instanceof ApiError)) return 'Something went wrong. Try again.';
  switch (error.code) {
    case 'unauthorized':
      return 'Wrong email or password.';
    case 'email_taken':
      return 'An account with this email already exists. Log in instead.';
    case 'rate_limited':
      return `Too many attempts from your address. Try again in ${error.retryAfter ?? 60} seconds.`;
    case 'invalid_request':
      return mode === 'signup'
        ? 'Enter a valid email and a password of at least 10 characters.'
        : 'Enter your email and password.';
    default:
      return error.message;
  }
}
