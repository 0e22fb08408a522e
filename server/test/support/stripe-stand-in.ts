/**
 * A local stand-in for Stripe's API, for the real `stripe` library pointed at it
 * (STRIPE_API_URL): just the endpoints IPCola calls, with Stripe's form-encoded requests,
 * idempotency keys and error shape, and a record of every request so a test can assert
 * what Stripe would have been sent. It also writes the events Stripe would send about
 * its sessions, signed with the library's own test-header helper.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

export interface StripeRequest {
  method: string;
  /** Without the query. */
  path: string;
  /** The form body, or the query of a GET, keys as Stripe writes them (`metadata[account_id]`). */
  form: Record<string, string>;
  idempotencyKey: string | undefined;
  authorization: string | undefined;
  headers: IncomingHttpHeaders;
}

/** The parts of a Checkout Session the stand-in keeps and the events carry. */
export interface StandInSession {
  id: string;
  object: 'checkout.session';
  mode: string;
  status: 'open' | 'complete';
  payment_status: 'unpaid' | 'paid';
  amount_total: number;
  currency: string;
  client_reference_id: string | null;
  metadata: Record<string, string>;
  payment_intent: string;
  customer: string | null;
  success_url: string;
  cancel_url: string;
  url: string;
}

/** A connected account as the stand-in keeps it; onboarding done sets the two flags. */
export interface StandInAccount {
  id: string;
  object: 'account';
  type: string;
  details_submitted: boolean;
  payouts_enabled: boolean;
  metadata: Record<string, string>;
}

export interface StripeStandIn {
  /** http://127.0.0.1:<port>, for STRIPE_API_URL. */
  url: string;
  requests: StripeRequest[];
  sessions: Map<string, StandInSession>;
  /** The receipt URL each payment intent's charge has. */
  receiptOf(paymentIntentId: string): string;
  /** Set to make GET /v1/payment_intents/:id answer 500 (or hang, with 'hang'). */
  paymentIntentTrouble: 'none' | 'fail' | 'hang';
  /** Connected accounts made through POST /v1/accounts, by id. */
  connectedAccounts: Map<string, StandInAccount>;
  /** Transfers made, by id. */
  transfers: Map<string, Record<string, unknown>>;
  /**
   * 'refuse': POST /v1/transfers answers 400 as Stripe does for insufficient funds;
   * 'hang-unmade': it never answers and makes nothing; 'hang-made': it makes the transfer
   * and never answers (held until close()), as when the answer is lost.
   */
  transferTrouble: 'none' | 'refuse' | 'hang-unmade' | 'hang-made';
  /** Forgets every idempotency key, as Stripe does after 24 hours. */
  forgetIdempotencyKeys(): void;
  /** PaymentIntents created with POST /v1/payment_intents (off-session charges), by id. */
  intents: Map<string, StandInIntent>;
  /** Set to make the card decline the next charges (402 card_error, card_declined). */
  declineCards: boolean;
  /**
   * What off-session charges answer: 'processing' leaves them unsettled, for the test to
   * settle with an event as Stripe would.
   */
  intentStatus: 'succeeded' | 'processing';
  /** The card each customer's Checkout payments save: the stand-in's one card. */
  paymentMethod: { id: string; brand: string; last4: string };
  /** Meter events received (POST /v1/billing/meter_events), by identifier. */
  meterEvents: Map<string, StandInMeterEvent>;
  /**
   * How many of the next meter events to record and then answer 500, as if the answer
   * were lost: the sender cannot tell whether Stripe has it.
   */
  loseMeterAnswers: number;
  close(): Promise<void>;
}

export interface StandInMeterEvent {
  event_name: string;
  identifier: string;
  customer: string;
  value: number;
  timestamp: number;
}

/** A PaymentIntent the stand-in made from POST /v1/payment_intents. */
export interface StandInIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_received: number;
  currency: string;
  customer: string | null;
  payment_method: string | null;
  status: 'succeeded' | 'processing';
  metadata: Record<string, string>;
  latest_charge: string;
}

const random = (bytes = 12) => randomBytes(bytes).toString('hex');

function stripeError(status: number, type: string, message: string) {
  return { status, body: { error: { type, message } } };
}

export async function startStripeStandIn(): Promise<StripeStandIn> {
  const requests: StripeRequest[] = [];
  const sessions = new Map<string, StandInSession>();
  // Stripe answers a repeated idempotency key with the first answer.
  const answered = new Map<string, { status: number; body: unknown }>();
  const hanging = new Set<() => void>();

  const standIn: StripeStandIn = {
    url: '',
    requests,
    sessions,
    receiptOf: (paymentIntentId) => `https://pay.stripe.com/receipts/payment/${paymentIntentId}`,
    paymentIntentTrouble: 'none',
    connectedAccounts: new Map(),
    transfers: new Map(),
    transferTrouble: 'none',
    forgetIdempotencyKeys: () => answered.clear(),
    intents: new Map(),
    declineCards: false,
    intentStatus: 'succeeded',
    paymentMethod: { id: `pm_test_${random()}`, brand: 'visa', last4: '4242' },
    meterEvents: new Map(),
    loseMeterAnswers: 0,
    close: () =>
      new Promise((resolve) => {
        for (const release of hanging) release();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  const createSession = (form: Record<string, string>) => {
    const id = `cs_test_${random()}`;
    const unitAmount = Number(form['line_items[0][price_data][unit_amount]']);
    const quantity = Number(form['line_items[0][quantity]'] ?? '1');
    const metadata: Record<string, string> = {};
    for (const [key, value] of Object.entries(form)) {
      const name = /^metadata\[([^\]]+)\]$/.exec(key)?.[1];
      if (name) metadata[name] = value;
    }
    const session: StandInSession = {
      id,
      object: 'checkout.session',
      mode: form.mode ?? '',
      status: 'open',
      payment_status: 'unpaid',
      amount_total: unitAmount * quantity,
      currency: form['line_items[0][price_data][currency]'] ?? '',
      client_reference_id: form.client_reference_id ?? null,
      metadata,
      payment_intent: `pi_test_${random()}`,
      customer: form.customer ?? null,
      success_url: form.success_url ?? '',
      cancel_url: form.cancel_url ?? '',
      url: `https://checkout.stripe.com/c/pay/${id}`,
    };
    sessions.set(id, session);
    return { status: 200, body: session };
  };

  const expands = (form: Record<string, string>, field: string) =>
    Object.entries(form).some(([key, value]) => key.startsWith('expand[') && value === field);
  const chargeOf = (id: string, amount: number, currency: string) => ({
    id: `ch_${id.slice('pi_test_'.length)}`,
    object: 'charge',
    amount,
    currency,
    paid: true,
    payment_intent: id,
    receipt_url: standIn.receiptOf(id),
  });

  const paymentIntent = (id: string, form: Record<string, string>) => {
    const created = standIn.intents.get(id);
    if (created) {
      const charge = chargeOf(id, created.amount, created.currency);
      return {
        status: 200,
        body: { ...created, latest_charge: expands(form, 'latest_charge') ? charge : charge.id },
      };
    }
    const session = [...sessions.values()].find((s) => s.payment_intent === id);
    if (!session)
      return stripeError(404, 'invalid_request_error', `No such payment_intent: '${id}'`);
    const charge = chargeOf(id, session.amount_total, session.currency);
    const saved = session.customer !== null;
    const method = standIn.paymentMethod;
    return {
      status: 200,
      body: {
        id,
        object: 'payment_intent',
        amount: session.amount_total,
        currency: session.currency,
        status: 'succeeded',
        customer: session.customer,
        // Checkout saves the card for later when asked to (setup_future_usage).
        setup_future_usage: saved ? 'off_session' : null,
        payment_method: expands(form, 'payment_method')
          ? {
              id: method.id,
              object: 'payment_method',
              type: 'card',
              card: { brand: method.brand, last4: method.last4 },
            }
          : method.id,
        latest_charge: expands(form, 'latest_charge') ? charge : charge.id,
      },
    };
  };

  const metadataOf = (form: Record<string, string>) => {
    const metadata: Record<string, string> = {};
    for (const [key, value] of Object.entries(form)) {
      const name = /^metadata\[([^\]]+)\]$/.exec(key)?.[1];
      if (name) metadata[name] = value;
    }
    return metadata;
  };

  /** Stripe Connect: accounts, their onboarding links, and transfers to them. */
  const connect = (method: string, pathname: string, form: Record<string, string>) => {
    if (method === 'POST' && pathname === '/v1/accounts') {
      const account: StandInAccount = {
        id: `acct_${random(8)}`,
        object: 'account',
        type: form.type ?? 'standard',
        details_submitted: false,
        payouts_enabled: false,
        metadata: metadataOf(form),
      };
      standIn.connectedAccounts.set(account.id, account);
      return { status: 200, body: account };
    }
    const accountId = /^\/v1\/accounts\/(acct_[A-Za-z0-9]+)$/.exec(pathname)?.[1];
    if (method === 'GET' && accountId) {
      const account = standIn.connectedAccounts.get(accountId);
      return account
        ? { status: 200, body: account }
        : stripeError(404, 'invalid_request_error', `No such account: '${accountId}'`);
    }
    if (method === 'POST' && pathname === '/v1/account_links') {
      if (!standIn.connectedAccounts.has(form.account ?? '')) {
        return stripeError(400, 'invalid_request_error', `No such account: '${form.account}'`);
      }
      return {
        status: 200,
        body: {
          object: 'account_link',
          created: Math.floor(Date.now() / 1000),
          expires_at: Math.floor(Date.now() / 1000) + 300,
          url: `https://connect.stripe.com/setup/e/${form.account}/${random(6)}`,
        },
      };
    }
    if (method === 'POST' && pathname === '/v1/transfers') {
      if (
        standIn.transferTrouble === 'refuse' ||
        !standIn.connectedAccounts.has(form.destination ?? '')
      ) {
        return stripeError(
          400,
          'invalid_request_error',
          'You have insufficient available funds in your Stripe account.',
        );
      }
      const transfer = {
        id: `tr_${random(8)}`,
        object: 'transfer',
        amount: Number(form.amount),
        amount_reversed: 0,
        currency: form.currency,
        destination: form.destination,
        transfer_group: form.transfer_group ?? null,
        reversed: false,
        metadata: metadataOf(form),
      };
      standIn.transfers.set(transfer.id, transfer);
      return { status: 200, body: transfer };
    }
    if (method === 'GET' && pathname === '/v1/transfers') {
      const data = [...standIn.transfers.values()].filter(
        (transfer) => !form.transfer_group || transfer.transfer_group === form.transfer_group,
      );
      return {
        status: 200,
        body: { object: 'list', data, has_more: false, url: '/v1/transfers' },
      };
    }
    return undefined;
  };

  const createIntent = (form: Record<string, string>) => {
    const id = `pi_test_${random()}`;
    const metadata = metadataOf(form);
    if (standIn.declineCards) {
      return {
        status: 402,
        body: {
          error: {
            type: 'card_error',
            code: 'card_declined',
            decline_code: 'generic_decline',
            message: 'Your card was declined.',
            payment_intent: { id, object: 'payment_intent', status: 'requires_payment_method' },
          },
        },
      };
    }
    const amount = Number(form.amount);
    const currency = form.currency ?? '';
    const intent: StandInIntent = {
      id,
      object: 'payment_intent',
      amount,
      amount_received: standIn.intentStatus === 'succeeded' ? amount : 0,
      currency,
      customer: form.customer ?? null,
      payment_method: form.payment_method ?? null,
      status: standIn.intentStatus,
      metadata,
      latest_charge: chargeOf(id, amount, currency).id,
    };
    standIn.intents.set(id, intent);
    return paymentIntent(id, form);
  };

  /** Stripe refuses an identifier it has seen, whatever the idempotency key. */
  const meterEvent = (form: Record<string, string>) => {
    const identifier = form.identifier ?? `mtr_${random()}`;
    if (standIn.meterEvents.has(identifier)) {
      return stripeError(
        400,
        'invalid_request_error',
        `An event already exists with identifier ${identifier}.`,
      );
    }
    const event: StandInMeterEvent = {
      event_name: form.event_name ?? '',
      identifier,
      customer: form['payload[stripe_customer_id]'] ?? '',
      value: Number(form['payload[value]']),
      timestamp: Number(form.timestamp ?? Math.floor(Date.now() / 1000)),
    };
    standIn.meterEvents.set(identifier, event);
    if (standIn.loseMeterAnswers > 0) {
      standIn.loseMeterAnswers -= 1;
      return stripeError(500, 'api_error', 'Something went wrong on our end.');
    }
    return {
      status: 200,
      body: {
        object: 'billing.meter_event',
        created: event.timestamp,
        event_name: event.event_name,
        identifier,
        livemode: false,
        payload: { stripe_customer_id: event.customer, value: String(event.value) },
        timestamp: event.timestamp,
      },
    };
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const url = new URL(req.url ?? '/', 'http://stand-in');
      const text = req.method === 'GET' ? url.search.slice(1) : Buffer.concat(chunks).toString();
      const form = Object.fromEntries(new URLSearchParams(text));
      const idempotencyKey = req.headers['idempotency-key'] as string | undefined;
      requests.push({
        method: req.method ?? '',
        path: url.pathname,
        form,
        idempotencyKey,
        authorization: req.headers.authorization,
        headers: req.headers,
      });
      const send = (answer: { status: number; body: unknown }) => {
        res.writeHead(answer.status, {
          'content-type': 'application/json',
          'request-id': `req_${random(7)}`,
        });
        res.end(JSON.stringify(answer.body));
      };
      if (!req.headers.authorization?.startsWith('Bearer sk_')) {
        return send(stripeError(401, 'invalid_request_error', 'You did not provide an API key.'));
      }
      const remembered = idempotencyKey && answered.get(`${req.method} ${idempotencyKey}`);
      if (remembered) return send(remembered);

      const held = () => new Promise<void>((resolve) => hanging.add(resolve));
      const transferring = req.method === 'POST' && url.pathname === '/v1/transfers';
      if (transferring && standIn.transferTrouble === 'hang-unmade') await held();
      let answer: { status: number; body: unknown };
      const connected = connect(req.method ?? '', url.pathname, form);
      const intent = /^\/v1\/payment_intents\/([A-Za-z0-9_]+)$/.exec(url.pathname)?.[1];
      if (connected) {
        answer = connected;
      } else if (req.method === 'POST' && url.pathname === '/v1/checkout/sessions') {
        answer = createSession(form);
      } else if (req.method === 'POST' && url.pathname === '/v1/customers') {
        answer = { status: 200, body: { id: `cus_test_${random(7)}`, object: 'customer' } };
      } else if (req.method === 'POST' && url.pathname === '/v1/billing/meter_events') {
        answer = meterEvent(form);
      } else if (req.method === 'POST' && url.pathname === '/v1/payment_intents') {
        answer = createIntent(form);
      } else if (req.method === 'GET' && intent) {
        if (standIn.paymentIntentTrouble === 'hang') {
          await held();
        }
        answer =
          standIn.paymentIntentTrouble === 'fail'
            ? stripeError(500, 'api_error', 'Something went wrong on our end.')
            : paymentIntent(intent, form);
      } else {
        answer = stripeError(
          404,
          'invalid_request_error',
          `Unrecognized request URL (${req.method}: ${url.pathname}).`,
        );
      }
      if (idempotencyKey && req.method === 'POST' && answer.status < 500) {
        answered.set(`${req.method} ${idempotencyKey}`, answer);
      }
      if (transferring && standIn.transferTrouble === 'hang-made') await held();
      send(answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return standIn;
}

/** A Stripe event about `object`, as Stripe would POST it to a webhook endpoint. */
export function stripeEvent(type: string, object: object, id = `evt_${random()}`) {
  return {
    id,
    object: 'event',
    api_version: Stripe.API_VERSION,
    created: Math.floor(Date.now() / 1000),
    type,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object },
  };
}

/** The session as Stripe reports it once the customer paid. */
export function paid(session: StandInSession): StandInSession {
  return { ...session, status: 'complete', payment_status: 'paid' };
}

/** A Stripe-Signature header for `payload`, made with the library's own helper. */
export function stripeSignature(payload: string, secret: string, timestamp?: number): string {
  return Stripe.webhooks.generateTestHeaderString({
    payload,
    secret,
    ...(timestamp === undefined ? {} : { timestamp }),
  });
}

/** The charge of a payment as Stripe's charge events report it, `amountRefunded` so far. */
export function stripeCharge(
  paymentIntentId: string,
  amount: number,
  currency: string,
  amountRefunded = 0,
) {
  return {
    id: `ch_${paymentIntentId.replace(/^pi_(test_)?/, '')}`,
    object: 'charge',
    amount,
    amount_refunded: amountRefunded,
    refunded: amountRefunded === amount,
    currency,
    paid: true,
    payment_intent: paymentIntentId,
  };
}

/** A dispute of a payment's charge, as charge.dispute.* events report it. */
export function stripeDispute(
  paymentIntentId: string,
  amount: number,
  currency: string,
  status: 'needs_response' | 'under_review' | 'won' | 'lost',
  id = `dp_${random(8)}`,
) {
  return {
    id,
    object: 'dispute',
    amount,
    currency,
    status,
    reason: 'fraudulent',
    charge: stripeCharge(paymentIntentId, amount, currency).id,
    payment_intent: paymentIntentId,
  };
}

/** A refund of a payment's charge, as charge.refund.updated reports it. */
export function stripeRefund(
  paymentIntentId: string,
  amount: number,
  currency: string,
  status: 'pending' | 'succeeded' | 'failed' | 'canceled',
  id = `re_${random(8)}`,
) {
  return {
    id,
    object: 'refund',
    amount,
    currency,
    status,
    ...(status === 'failed' ? { failure_reason: 'expired_or_canceled_card' } : {}),
    charge: stripeCharge(paymentIntentId, amount, currency).id,
    payment_intent: paymentIntentId,
  };
}

/** POSTs `event` to a server's Stripe webhook, signed with `secret` as Stripe signs it. */
export function deliverStripeEvent(apiPort: number, event: object, secret: string) {
  const payload = JSON.stringify(event);
  return fetch(`http://127.0.0.1:${apiPort}/v1/billing/stripe-webhook`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'stripe-signature': stripeSignature(payload, secret),
    },
    body: payload,
  });
}
