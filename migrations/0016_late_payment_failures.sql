-- An off-session charge can fail after Stripe first answered (a payment still processing
-- that is then declined): payment_intent.payment_failed reports it. The PaymentIntent of
-- the failure shown on the account is kept so that the failure is recorded, and sent as
-- topup.failed, once whether the charge's own answer or the event tells of it first.
ALTER TABLE accounts ADD COLUMN auto_topup_failed_intent text;

-- Pending payouts are settled by a sweep (at start-up and every few minutes) as well as
-- by the operator's next request: the sweep reads them oldest first.
CREATE INDEX payouts_pending_oldest ON payouts (created_at, id) WHERE status = 'pending';
