-- Which workspace each of the platform's billing customers belongs to: the write side's
-- map for billing webhooks that name only the customer (invoices).
CREATE TABLE billing_customers
(
    customer_id  text PRIMARY KEY,
    workspace_id text NOT NULL
);

-- Customers recorded before the map existed.
INSERT INTO billing_customers (customer_id, workspace_id)
SELECT payload -> 'WorkspaceBillingCustomerCreated' ->> 'stripe_customer_id', aggregate_id
  FROM events
 WHERE aggregate_type = 'WorkspaceSubscription' AND event_type = 'WorkspaceBillingCustomerCreated'
ON CONFLICT (customer_id) DO NOTHING;
