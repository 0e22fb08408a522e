-- Stripe events applied, by id. An event's row is written in the transaction that applies
-- it (its journal entry, its customer webhook), so a redelivery (Stripe retries until it
-- gets a 2xx, and may send an event twice) finds it and changes nothing, and an event
-- whose transaction never committed (a crash before the answer) is applied when Stripe
-- sends it again. Ignored and unattributable events are recorded too: one answer per id.
CREATE TABLE stripe_events (
  id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 255),
  type        text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
