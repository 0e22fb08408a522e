/**
 * The portal page's Content-Security-Policy. Scripts come only from the server's own
 * hashed bundles: no inline script, no eval. Mantine writes a few `<style>` elements (the
 * AppShell's and SimpleGrid's media rules) and many `style="..."` attributes, so:
 *
 * - `<style>` elements need this response's nonce, which MantineProvider puts on each
 *   (`getStyleNonce`, read from the page's `csp-nonce` meta); injected markup has none.
 * - `style` attributes are allowed (`style-src-attr 'unsafe-inline'`): they cannot run
 *   script, load only from `img-src`, and cannot select other elements, so they cannot read
 *   the page the way an injected stylesheet could. `style-src` without 'unsafe-inline'
 *   keeps that last door shut; browsers before CSP level 3 (no `style-src-attr`) would
 *   drop the attributes and show the portal unstyled rather than unsafe.
 */
export function portalPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join('; ');
}
