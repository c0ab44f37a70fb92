// The contract's example bodies (docs/CONTRACT.md), typed with the client that
// `openapi-typescript` generates from the served OpenAPI description: `make
// openapi-lint` generates `roampay.d.ts` beside this file (in target/client) and
// compiles both with `tsc --strict`. A description a generated client cannot use
// (an untyped body, a field missing or mistyped) fails the build.
import type { components } from "./roampay";

type S = components["schemas"];

// PUT /api/workspaces/{workspace_id}/locations/{location_id}
export const location: S["LocationInput"] = {
  name: "Depot A", address: "1 Main St", city: "Sydney", postal_code: "2000",
  country: "AUS", coordinates: { latitude: "-33.868800", longitude: "151.209300" },
  evses: [{
    uid: "EVSE-1", evse_id: "AU*BFL*E1", connectors: [{
      id: "1", standard: "IEC_62196_T2_COMBO", format: "CABLE", power_type: "DC",
      max_electric_power: 50000,
      tariff: { currency: "aud", price_per_kwh_cents: 45, flat_fee_cents: 0 },
    }],
  }],
};

// PATCH /api/permissions/workspace/{workspace_id}/ocpi-config
export const patch: S["OcpiConfigPatch"] = {
  allow_guest_access: true,
  pre_auth_cents: 5000,
  currency: "aud",
  stripe: {
    publishable_key: "pk_test_51Hx...",
    secret_key: "rk_test_51Hx...",
    webhook_signing_secret: "whsec_...",
  },
};

// POST /ocpi/create-payment-intent
export const createIntent: S["CreatePaymentIntent"] = {
  location_id: "LOC-1", evse_uid: "EVSE-1", connector_id: "1", email: "d@example.com",
};

// Answers a client reads.
export function bootstrap(envelope: S["OcpiEnvelope"]): boolean {
  // GET /emsp/2.2.1/locations/{location_id}?show_ocpi_cfg=true
  const cfg = envelope.data?.ocpi_cfg;
  const tariff = envelope.data?.evses[0]?.connectors[0]?.tariff;
  return (cfg?.payment_ready ?? false) && (tariff?.price_per_kwh_cents ?? 0) >= 0
    && (cfg?.payment_error?.code ?? "") !== "x";
}

export function created(answer: S["CreatedPaymentIntent"]): string | null | undefined {
  return answer.client_secret;
}

export function config(answer: S["OcpiConfig"]): string | null | undefined {
  return answer.stripe.health.status + answer.stripe.webhook_url;
}

export function problem(p: S["Problem"]): number {
  return p.status + p.code.length;
}
