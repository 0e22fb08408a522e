import { Center, Loader } from '@mantine/core';
import { lazy, Suspense } from 'react';
import { Navigate, Route, Routes, useLocation } from 'react-router';
import { AuthPage } from './pages/AuthPage.tsx';
import { Shell } from './Shell.tsx';
import { useMe } from './session.tsx';

// Each page is its own chunk: the first load carries the shell and the page it opens.
const KeysPage = lazy(() => import('./pages/KeysPage.tsx'));
const ProxyBuilderPage = lazy(() => import('./pages/ProxyBuilderPage.tsx'));
const UsagePage = lazy(() => import('./pages/UsagePage.tsx'));
const BillingPage = lazy(() => import('./pages/BillingPage.tsx'));
const NodesPage = lazy(() => import('./pages/NodesPage.tsx'));

export function Waiting() {
  return (
    <Center h={200}>
      <Loader aria-label="Loading" />
    </Center>
  );
}

/**
 * Stripe sends people back to PORTAL_URL, wherever the operator points it: a return from
 * Checkout belongs on the billing page, one from Connect onboarding on the nodes page.
 */
export function Landing() {
  const { pathname, search } = useLocation();
  const query = new URLSearchParams(search);
  if (query.has('checkout') && !pathname.startsWith('/billing')) {
    return <Navigate to={`/billing${search}`} replace />;
  }
  if (query.has('payouts') && !pathname.startsWith('/nodes')) {
    return <Navigate to={`/nodes${search}`} replace />;
  }
  return null;
}

export function App() {
  const me = useMe();
  if (me.isPending) return <Waiting />;
  // Not signed in (or the session expired): the log-in page, at the address asked for.
  if (!me.data) return <AuthPage />;
  return (
    <Shell me={me.data}>
      <Landing />
      <Suspense fallback={<Waiting />}>
        <Routes>
          <Route path="/" element={<Navigate to="/keys" replace />} />
          <Route path="/keys" element={<KeysPage />} />
          <Route path="/proxies" element={<ProxyBuilderPage />} />
          <Route path="/usage" element={<UsagePage />} />
          <Route path="/billing" element={<BillingPage />} />
          <Route path="/nodes" element={<NodesPage />} />
          <Route path="*" element={<Navigate to="/keys" replace />} />
        </Routes>
      </Suspense>
    </Shell>
  );
}
