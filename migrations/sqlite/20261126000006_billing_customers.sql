-- Which workspace each of the platform's billing customers belongs to: the write side's
-- map for billing webhooks that name only the customer (invoices).
CREATE TABLE billing_customers
(
    customer_id  text PRIMARY KEY,
    workspace_id text NOT NULL
) STRICT;
