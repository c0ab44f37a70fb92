// The same contract bodies, typed with the client `@hey-api/openapi-ts` generates
// (in ./hey beside this file): `make openapi-lint` compiles it and the whole generated
// client with `tsc --strict`.
import type {
  CreatedPaymentIntent, CreatePaymentIntent, LocationInput, OcpiConfigPatch, OcpiEnvelope,
} from "./hey/types.gen";
import * as contract from "./examples";

export const location: LocationInput = contract.location;
export const patch: OcpiConfigPatch = contract.patch;
export const createIntent: CreatePaymentIntent = contract.createIntent;

// Answers a client reads, and the connector words as OCPI's enumerations.
export function bootstrap(envelope: OcpiEnvelope): boolean {
  const connector = envelope.data?.evses[0]?.connectors[0];
  const dc: boolean = connector?.power_type === "DC";
  return (envelope.data?.ocpi_cfg?.payment_ready ?? false) && (dc || connector?.format === "SOCKET");
}

export function created(answer: CreatedPaymentIntent): string | null | undefined {
  return answer.client_secret;
}

// A connector's standard, format and power type are OCPI's enumerations, not strings.
type Connector = NonNullable<OcpiEnvelope["data"]>["evses"][number]["connectors"][number];
type Enumerated<T> = string extends T ? "a plain string" : "an enumeration";
export const words: [
  Enumerated<Connector["standard"]>, Enumerated<Connector["format"]>, Enumerated<Connector["power_type"]>,
] = ["an enumeration", "an enumeration", "an enumeration"];
