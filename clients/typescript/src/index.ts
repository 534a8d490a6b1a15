// A small client of SmartStart Core for Node: one gRPC transport (HTTP/2, Connect's
// @connectrpc/connect-node), a bearer token on every call, a default deadline, and errors
// decoded into their google.rpc ErrorInfo reason.
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ErrorInfoSchema, BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";
import { AuditService } from "./gen/smartstart/audit/v1/audit_service_pb.js";
import { ConversionService } from "./gen/smartstart/conversion/v1/conversion_service_pb.js";
import { DocumentService } from "./gen/smartstart/document/v1/document_service_pb.js";
import { OpsService } from "./gen/smartstart/ops/v1/ops_service_pb.js";
import { ProfileService } from "./gen/smartstart/profile/v1/profile_service_pb.js";
import { WalletService } from "./gen/smartstart/wallet/v1/wallet_service_pb.js";

export { Code, ConnectError };

export interface ClientOptions {
  /** Bearer token, or a function returning the current one (called per call). */
  token?: string | (() => string);
  /** Deadline of every call without its own `timeoutMs` (default 10 s). */
  timeoutMs?: number;
}

export interface SmartStartClient {
  profile: Client<typeof ProfileService>;
  wallet: Client<typeof WalletService>;
  conversion: Client<typeof ConversionService>;
  document: Client<typeof DocumentService>;
  audit: Client<typeof AuditService>;
  ops: Client<typeof OpsService>;
}

/** `baseUrl` is `http://host:port` (plaintext) or `https://host:port` (TLS). */
export function createSmartStartClient(baseUrl: string, options: ClientOptions = {}): SmartStartClient {
  const auth: Interceptor = (next) => async (req) => {
    const token = typeof options.token === "function" ? options.token() : options.token;
    if (token && !req.header.has("authorization")) {
      req.header.set("authorization", `Bearer ${token}`);
    }
    return next(req);
  };
  const transport = createGrpcTransport({
    baseUrl,
    interceptors: [auth],
    defaultTimeoutMs: options.timeoutMs ?? 10_000,
  });
  const client = <S extends DescService>(service: S): Client<S> => createClient(service, transport);
  return {
    profile: client(ProfileService),
    wallet: client(WalletService),
    conversion: client(ConversionService),
    document: client(DocumentService),
    audit: client(AuditService),
    ops: client(OpsService),
  };
}

/** A failed call as the server described it. */
export interface ApiError {
  code: Code;
  message: string;
  /** ErrorInfo reason, UPPER_SNAKE (e.g. `NOT_FOUND`, `IDEMPOTENCY_CONFLICT`); undefined when absent. */
  reason?: string;
  metadata: Record<string, string>;
  /** BadRequest field violations: [field, description]. */
  fieldViolations: Array<[string, string]>;
}

/** Decode any error a call threw (a ConnectError, or anything else as UNKNOWN). */
export function apiError(err: unknown): ApiError {
  const connect = ConnectError.from(err);
  const [info] = connect.findDetails(ErrorInfoSchema);
  const violations = connect
    .findDetails(BadRequestSchema)
    .flatMap((bad) => bad.fieldViolations.map((v): [string, string] => [v.field, v.description]));
  return {
    code: connect.code,
    message: connect.rawMessage,
    reason: info?.reason || undefined,
    metadata: { ...(info?.metadata ?? {}) },
    fieldViolations: violations,
  };
}
