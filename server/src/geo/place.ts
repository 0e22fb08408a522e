/**
 * What a geolocation or ASN database says about an address, made into the targeting
 * vocabulary: an assigned lowercase country, region and city as slugs, the ASN. Two
 * record shapes are read: the flat one of the packaged ip-location-db files
 * (`country_code`, `state1`, `city`) and the nested GeoIP2 one that MaxMind's and
 * DB-IP's own MMDB files use (`country.iso_code`, `subdivisions[0].names.en`,
 * `city.names.en`); ASN records are `autonomous_system_number` and
 * `autonomous_system_organization` in every database that has them.
 */
import { isAsn, isCountryCode, isSlug } from '@ipcola/shared/targeting';

/** Where an address is; a field the database does not know is absent. */
export interface Place {
  readonly country?: string;
  readonly region?: string;
  readonly city?: string;
  readonly asn?: number;
  /** The autonomous system's holder, as the database names it. */
  readonly asOrganization?: string;
}

type Record_ = Readonly<Record<string, unknown>>;

/** The place a database record names; empty when it names nothing usable. */
export function placeOfRecord(record: Record_): Place {
  const place: { -readonly [K in keyof Place]: Place[K] } = {};
  const country = text(record.country_code) ?? text(field(record.country, 'iso_code'));
  if (country && isCountryCode(country.toLowerCase())) {
    place.country = country.toLowerCase();
    const subdivisions = record.subdivisions;
    const region = slug(
      text(record.state1) ??
        (Array.isArray(subdivisions) ? englishName(subdivisions[0]) : undefined),
    );
    if (region) place.region = region;
    const city = slug(text(record.city) ?? englishName(record.city));
    if (city) place.city = city;
  }
  const asn = record.autonomous_system_number;
  if (typeof asn === 'number' && isAsn(asn)) {
    place.asn = asn;
    const organization = text(record.autonomous_system_organization);
    if (organization) place.asOrganization = organization;
  }
  return place;
}

/** Letters no Unicode decomposition takes to ASCII, as they are written in English. */
const LETTERS: Readonly<Record<string, string>> = {
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
  ø: 'o',
  ł: 'l',
  đ: 'd',
  ð: 'd',
  þ: 'th',
  ı: 'i',
};

/**
 * A place name as a targeting slug (`New York` → `new_york`, `São Paulo` → `sao_paulo`);
 * a district in parentheses is left out (`Amsterdam (Amsterdam-Centrum)` → `amsterdam`),
 * since customers ask for the city. Undefined when nothing of it is ASCII.
 */
export function slug(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  const ascii = name
    .replace(/\s*\([^)]*\)\s*$/, '')
    .toLowerCase()
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .replace(/[ßæœøłđðþı]/g, (letter) => LETTERS[letter] ?? '')
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 64)
    .replace(/_+$/, '');
  return isSlug(ascii) ? ascii : undefined;
}

function englishName(value: unknown): string | undefined {
  return text(field(field(value, 'names'), 'en'));
}

function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record_)[name] : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}
