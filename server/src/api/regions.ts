/**
 * GET /v1/regions: online exits counted by country, city and type, in pages. Counts only:
 * whatever the inventory hands over, no node identity or exit IP leaves here.
 */

import type { components } from '@ipcola/openapi';
import express, { type RequestHandler, type Router } from 'express';
import { decodeKeyCursor, encodeKeyCursor } from './cursor.ts';
import { pageOf, pageRequest } from './pages.ts';
import { onlyMethods } from './requests.ts';

type Schemas = components['schemas'];
type Region = Schemas['Region'];
type RegionCount = Omit<Region, 'country'> & { country: string | null };

const DEFAULT_LIMIT = 500;

export interface RegionsOptions {
  /** Online exits by country, city and type (the hub's live registry). */
  listRegions: () => Promise<RegionCount[]>;
  caller: RequestHandler;
}

export function regionsRouter({ listRegions, caller }: RegionsOptions): Router {
  const router = express.Router();
  router.route('/regions').get(caller, regionList(listRegions)).all(onlyMethods('GET', 'HEAD'));
  return router;
}

function regionList(listRegions: () => Promise<RegionCount[]>): RequestHandler {
  return async (req, res) => {
    // The parameters were checked against the document (parameters.ts).
    const { country, type } = req.query as Record<string, string | undefined>;
    const { limit, cursor } = pageRequest(req, DEFAULT_LIMIT);
    const wanted = country?.toLowerCase();
    const regions: Region[] = [];
    for (const region of await listRegions()) {
      if (region.exits <= 0 || region.country === null) continue;
      if (wanted !== undefined && region.country !== wanted) continue;
      if (type !== undefined && region.type !== type) continue;
      regions.push({
        country: region.country,
        city: region.city ?? null,
        type: region.type,
        exits: region.exits,
        healthy: region.healthy,
        asns: region.asns,
      });
    }
    regions.sort(regionOrder);

    let start = 0;
    if (cursor !== undefined) {
      const [afterCountry, afterCity, afterType] = decodeKeyCursor(cursor, 3);
      const after = { country: afterCountry ?? '', city: afterCity ?? null, type: afterType ?? '' };
      start = regions.findIndex((region) => regionOrder(region, after) > 0);
      if (start < 0) start = regions.length;
    }
    const page = pageOf(regions.slice(start, start + limit + 1), limit, (last) =>
      encodeKeyCursor([last.country, last.city, last.type]),
    );
    res.json({
      items: page.items,
      // Deprecated alias of items, kept for one release (the document says so).
      data: page.items,
      next_cursor: page.nextCursor,
    } satisfies Schemas['RegionList']);
  };
}

interface SortKey {
  country: string;
  city: string | null;
  type: string;
}

/** By country, then city (unknown city last), then type. */
function regionOrder(a: SortKey, b: SortKey): number {
  return (
    compare(a.country, b.country) ||
    Number(a.city === null) - Number(b.city === null) ||
    compare(a.city ?? '', b.city ?? '') ||
    compare(a.type, b.type)
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
