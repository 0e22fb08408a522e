import react from '@vitejs/plugin-react';
import { defaultClientConditions, defineConfig } from 'vite';

// `npm run dev` forwards the API to a running server (IPCOLA_API, default npm start's port).
const api = process.env.IPCOLA_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  // The SDK's own source (its `source` export condition), so the portal needs no SDK build first.
  resolve: { conditions: ['source', ...defaultClientConditions] },
  server: {
    proxy: { '/v1': api, '/docs': api, '/openapi.yaml': api, '/healthz': api },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The portal is served from /assets/ with immutable caching; hashed names only.
    assetsDir: 'assets',
    // Small assets become data: URIs; the CSP allows data: images only, so keep fonts out.
    assetsInlineLimit: 0,
  },
});
