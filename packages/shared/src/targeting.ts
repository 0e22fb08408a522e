/**
 * The targeting vocabulary: what an exit can be tagged with and a customer can ask for
 * (country, region, city, ASN, exit type). The one source of these rules for the agent's
 * command line, the node's hello, the proxy username, upstream-proxy registration, the
 * exit index and leases: when each kept its own copy, the agent and the hub took any two
 * letters as a country (`uk`, `xx`) while the gateway targets only assigned codes, so
 * such a node came online and could never be reached.
 *
 * Each edge words its own refusal (a CLI option, a hello field, a username parameter, a
 * request field) around the rules and phrases here.
 */

export const EXIT_TYPES = ['residential', 'datacenter', 'mobile'] as const;
export type ExitType = (typeof EXIT_TYPES)[number];

/** What a customer asks an exit to be; every field optional (absent: any). */
export interface Targeting {
  /** ISO 3166-1 alpha-2, lowercase, assigned (see checkCountry). */
  country?: string;
  /** Lowercase slug (see isSlug), `_` for a space. */
  region?: string;
  /** Lowercase slug (see isSlug), `_` for a space. */
  city?: string;
  /** Autonomous system number, 1 to ASN_MAX. */
  asn?: number;
  type?: ExitType;
}

/** Where an exit is, as its node declared it; an undeclared field is unknown. */
export type ExitLocation = Readonly<Omit<Targeting, 'type'>>;

/** ASNs are 32-bit (RFC 6793); 0 is reserved. */
export const ASN_MAX = 4_294_967_295;

/** A slug: what region and city are written as. */
export const SLUG_RULE = '1-64 of a-z, 0-9 and _';
// Anchored, one character class, bounded: linear, no backtracking to exploit.
const SLUG = /^[a-z0-9_]{1,64}$/;

// The 249 officially assigned ISO 3166-1 alpha-2 codes. Embedded rather than
// asked of Intl.DisplayNames, which on Node 20 also names reserved,
// withdrawn and user-assigned codes (UK, EU, UN, EZ, SU, YU, AC, XK, ...).
const ASSIGNED_COUNTRIES: ReadonlySet<string> = new Set(
  (
    'ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq ' +
    'br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm ' +
    'do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs ' +
    'gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn ' +
    'kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq ' +
    'mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm ' +
    'pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st sv ' +
    'sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg vi ' +
    'vn vu wf ws ye yt za zm zw'
  ).split(' '),
);

/** An officially assigned ISO 3166-1 alpha-2 code, in lowercase (what exits are tagged with). */
export function isCountryCode(code: string): boolean {
  return ASSIGNED_COUNTRIES.has(code);
}

export type CountryCheck = { ok: true; code: string } | { ok: false; reason: string };

/**
 * A country in either case, lowercased, or why it is refused: a phrase that follows the
 * value in a message (`country 'xx' is not an assigned ISO 3166-1 alpha-2 code`).
 */
export function checkCountry(raw: string): CountryCheck {
  const code = raw.toLowerCase();
  if (ASSIGNED_COUNTRIES.has(code)) return { ok: true, code };
  if (code === 'uk') {
    // Reserved by ISO at the UK's request but not assigned: a common slip.
    return { ok: false, reason: "is not an ISO 3166-1 code; use 'gb' for the United Kingdom" };
  }
  return { ok: false, reason: 'is not an assigned ISO 3166-1 alpha-2 code' };
}

/** A region or city slug, as it is (callers that accept either case lowercase first). */
export function isSlug(value: string): boolean {
  return SLUG.test(value);
}

export function isAsn(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= ASN_MAX;
}

export function isExitType(value: string): value is ExitType {
  return (EXIT_TYPES as readonly string[]).includes(value);
}
