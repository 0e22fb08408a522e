/** What the accounts module accepts as an email, a password, a name (the API's schema agrees). */

import { ipcolaError } from '../errors/index.ts';

export const EMAIL_MAX_LENGTH = 254;
export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 256;
export const NAME_MAX_LENGTH = 100;

// Printable ASCII other than the characters that need quoting in an address.
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * A sane email address: `local@domain`, ASCII (internationalised domains in their
 * `xn--` form), at most 254 characters, a domain of at least two labels. No comments,
 * quoting or IP literals: nobody signs up with those, and they are what injections hide in.
 */
export function isEmailAddress(value: string): boolean {
  if (value.length > EMAIL_MAX_LENGTH) return false;
  const at = value.lastIndexOf('@');
  if (at < 1) return false;
  const local = value.slice(0, at);
  const labels = value.slice(at + 1).split('.');
  return (
    LOCAL_PART.test(local) &&
    !local.startsWith('.') &&
    !local.endsWith('.') &&
    !local.includes('..') &&
    labels.length >= 2 &&
    labels.every((label) => DOMAIN_LABEL.test(label))
  );
}

/** Length in characters (code points), as JSON Schema's minLength/maxLength count. */
export function characterCount(value: string): number {
  let count = 0;
  for (const _ of value) count++;
  return count;
}

/** Free text shown back to the user: bounded, and no control characters. */
export function isDisplayName(value: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  return characterCount(value) <= NAME_MAX_LENGTH && !/[\u0000-\u001f\u007f]/.test(value);
}

/** Refuses a name that is not a display name, with the one message every form uses. */
export function checkDisplayName(value: string): void {
  if (!isDisplayName(value)) {
    throw ipcolaError(
      'invalid_request',
      `name must be at most ${NAME_MAX_LENGTH} characters, without control characters`,
    );
  }
}
