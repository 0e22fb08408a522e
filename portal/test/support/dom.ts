/**
 * A DOM for rendering the portal's components in Node (happy-dom), registered before any
 * portal module loads: `src/api/client.ts` reads `location.origin` once, at import.
 * Import this first in a component test.
 */
import { GlobalRegistrator } from '@happy-dom/global-registrator';

export const ORIGIN = 'http://127.0.0.1:8080';

// The API client runs on the platform's fetch classes and streams, as in a browser: Node's
// are kept, since Node's Request refuses happy-dom's streams as a body.
const platform = {
  Request: globalThis.Request,
  Response: globalThis.Response,
  Headers: globalThis.Headers,
  AbortController: globalThis.AbortController,
  AbortSignal: globalThis.AbortSignal,
  ReadableStream: globalThis.ReadableStream,
  WritableStream: globalThis.WritableStream,
  TransformStream: globalThis.TransformStream,
};

GlobalRegistrator.register({ url: `${ORIGIN}/`, width: 1280, height: 900 });
Object.assign(globalThis, platform);

// Mantine reads media queries and observes sizes; happy-dom's answers are enough when
// present, and these stand in when a release lacks one.
globalThis.window.matchMedia ??= (query: string) =>
  ({
    matches: false,
    media: query,
    onchange: null,
    addListener() {},
    removeListener() {},
    addEventListener() {},
    removeEventListener() {},
    dispatchEvent: () => false,
  }) as MediaQueryList;
globalThis.ResizeObserver ??= class {
  observe() {}
  unobserve() {}
  disconnect() {}
};

// Mantine's autosizing textarea sizes itself again when web fonts load; happy-dom loads none.
if (!('fonts' in document)) {
  Object.defineProperty(document, 'fonts', {
    value: Object.assign(new EventTarget(), { ready: Promise.resolve() }),
  });
}

// React's act() warns unless it knows it runs under a test harness.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
