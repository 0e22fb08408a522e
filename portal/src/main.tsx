import '@mantine/core/styles.layer.css';
import '@mantine/notifications/styles.layer.css';
import './portal.css';
import { MantineProvider } from '@mantine/core';
import { Notifications } from '@mantine/notifications';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { setNonce } from 'get-nonce';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router';
import { App } from './App.tsx';
import { onSessionExpired } from './api/client.ts';
import { ME } from './session.tsx';
import { cssVariablesResolver, theme } from './theme.ts';

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // The SDK's transport already retried what asking again may cure (429, 5xx, a lost
      // connection); a refusal will not change by asking again.
      retry: false,
      refetchOnWindowFocus: true,
    },
  },
});

// An expired session shows the log-in page in place; the URL stays, so signing in
// again returns the person to the page they were on.
onSessionExpired(() => {
  queryClient.setQueryData(ME, null);
});

// The nonce the Content-Security-Policy of this page allows Mantine's <style> elements.
const styleNonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? '';

// Modals lock scrolling with a <style> of react-remove-scroll's, which takes its nonce here.
setNonce(styleNonce);

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root');
createRoot(root).render(
  <StrictMode>
    <MantineProvider
      theme={theme}
      cssVariablesResolver={cssVariablesResolver}
      getStyleNonce={() => styleNonce}
    >
      <Notifications position="top-right" />
      <QueryClientProvider client={queryClient}>
        <BrowserRouter>
          <App />
        </BrowserRouter>
      </QueryClientProvider>
    </MantineProvider>
  </StrictMode>,
);
