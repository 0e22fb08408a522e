/**
 * Debian's Chromium driven by playwright-core (never a downloaded browser), with the two
 * things every page of the portal is checked for: screenshots at desktop and phone width,
 * saved as test artifacts, and axe-core's accessibility rules.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';

export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

export const WIDTHS = { desktop: { width: 1280, height: 860 }, phone: { width: 375, height: 760 } };

/**
 * Full-page screenshots of what the page shows now, at 1280 and 375 px; answers the widths
 * at which the page is wider than the window (it would scroll sideways).
 */
export async function screenshots(page: Page, name: string): Promise<string[]> {
  const overflowing: string[] = [];
  await mkdir(ARTIFACTS, { recursive: true });
  const before = page.viewportSize() ?? WIDTHS.desktop;
  for (const [label, size] of Object.entries(WIDTHS)) {
    await page.setViewportSize(size);
    // A full-page shot of a scrolled page draws the fixed header mid-page.
    await page.evaluate(() => window.scrollTo(0, 0));
    // The navbar slides away below the phone breakpoint: shoot once nothing moves.
    await page.waitForFunction(() =>
      document.getAnimations().every((animation) => animation.playState !== 'running'),
    );
    await page.screenshot({ path: `${ARTIFACTS}${name}-${label}.png`, fullPage: true });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    if (width > size.width) overflowing.push(`${label}: ${width} px wide in ${size.width}`);
  }
  await page.setViewportSize(before);
  return overflowing;
}

const axeSource = readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/**
 * axe-core's serious and critical violations on the page as it is. Evaluated through the
 * DevTools protocol, which the page's script-src does not govern.
 */
export async function seriousAccessibilityViolations(page: Page): Promise<string[]> {
  await page.evaluate(`${await axeSource};0`);
  // The page as a person reads it: once its colour transitions have ended (a button that
  // turns "Copied" is otherwise judged on a colour halfway between two). Endless
  // animations (loaders) are left running.
  await page.evaluate(
    `Promise.all(document.getAnimations()
      .filter((a) => a.effect?.getTiming().iterations !== Infinity)
      .map((a) => a.finished.catch(() => {})))`,
  );
  // With a modal dialog open, the page behind it is dimmed and out of reach: the dialog is
  // what a person can read and use, so it is what is checked (the page is, without it).
  const violations = (await page.evaluate(
    `(() => {
      // The newest: one it replaced may still be fading out.
      const dialog = [...document.querySelectorAll('[role="dialog"]')].at(-1);
      return axe.run(dialog ?? document, { resultTypes: ['violations'] }).then((r) => r.violations);
    })()`,
  )) as AxeViolation[];
  return violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map(
      (violation) =>
        `${violation.id} (${violation.impact}): ${violation.help} at ${violation.nodes
          .map((node) => JSON.stringify(node.target))
          .join(', ')}`,
    );
}
