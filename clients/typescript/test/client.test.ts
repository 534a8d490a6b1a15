// The TypeScript client against a real `smartstart serve` on the embedded PostgreSQL:
// register a user, create a venture, record an accepted task, read the wallet and the
// ledger, and see typed error reasons. Run by `make ts-test` (node's test runner), which builds first.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import { Code, apiError, createSmartStartClient, type SmartStartClient } from "../src/index.js";
import {
  LedgerEntryType,
  TaskTier,
  WithheldReason,
} from "../src/gen/smartstart/wallet/v1/wallet_service_pb.js";

const REPO = resolve(import.meta.dirname, "../../../..");
const SMARTSTART = process.env.SMARTSTART_BIN ?? join(REPO, ".venv/bin/smartstart");
const SECRET = "smartstart-ts-test-only-not-for-production";
const SYSTEM = "00000000-0000-0000-0000-000000000001";

function token(sub: string, roles: string[]): string {
  const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, roles, iat: now, exp: now + 3600 })}`;
  const signature = createHmac("sha256", SECRET).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => ok(port));
    });
  });
}

let server: ChildProcess;
let dataDir: string;
let baseUrl: string;
let log = "";

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "smartstart-ts-"));
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  const env = { ...process.env };
  delete env.DATABASE_URL; // the embedded PostgreSQL, under dataDir
  server = spawn(SMARTSTART, ["serve"], {
    env: {
      ...env,
      SMARTSTART_DATA_DIR: dataDir,
      SMARTSTART_GRPC_ADDR: `127.0.0.1:${port}`,
      SMARTSTART_JWT_DEV_SECRET: SECRET,
      SMARTSTART_JOBS_ENABLED: "false",
      SMARTSTART_LOG_LEVEL: "warning",
      SMARTSTART_SHUTDOWN_GRACE_S: "2",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout?.on("data", (chunk) => (log += chunk));
  server.stderr?.on("data", (chunk) => (log += chunk));
  // Serving once an anonymous call is answered (the first start runs initdb and migrations).
  const probe = createSmartStartClient(baseUrl, { timeoutMs: 2_000 });
  const deadline = Date.now() + 180_000;
  for (;;) {
    assert.equal(server.exitCode, null, `server exited: ${log.slice(-2000)}`);
    try {
      await probe.profile.getProfile({ userId: randomUUID() });
    } catch (err) {
      if (apiError(err).code === Code.NotFound) break;
    }
    assert.ok(Date.now() < deadline, `server did not answer in time: ${log.slice(-2000)}`);
    await new Promise((ok) => setTimeout(ok, 500));
  }
});

after(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((ok) => server.once("exit", ok));
    server.kill("SIGTERM");
    await exited;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test("register, reward, wallet and ledger, typed errors", async () => {
  const system = createSmartStartClient(baseUrl, { token: token(SYSTEM, ["system"]) });

  const user = await system.profile.registerUser({
    requestId: randomUUID(),
    externalId: "ts-ada",
    email: "ts-ada@example.com",
    displayName: "Ada from TypeScript",
  });
  assert.match(user.userId, /^[0-9a-f-]{36}$/);
  const reviewer = await system.profile.registerUser({
    requestId: randomUUID(),
    externalId: "ts-grace",
    email: "ts-grace@example.com",
    displayName: "Grace",
  });

  // A venture (the board's), then an accepted task for it. The new user has no reputation,
  // KYC or device report yet, so the BUZ is withheld with typed reasons and the XP awarded.
  const board = createSmartStartClient(baseUrl, { token: token(randomUUID(), ["board"]) });
  const venture = await board.conversion.createVenture({
    requestId: randomUUID(),
    name: `TypeScript venture ${randomUUID()}`,
    conversionPoolBps: 1000,
  });
  const task = {
    taskId: `ts-task-${randomUUID()}`,
    userId: user.userId,
    tier: TaskTier.A,
    quality: 4,
    reviewerIds: [reviewer.userId],
    ventureId: venture.id,
    acceptedAt: timestampFromDate(new Date()),
  };
  const reward = await system.wallet.recordTaskAccepted(task);
  assert.equal(reward.withheld, true);
  assert.deepEqual(reward.withheldReasons, [
    WithheldReason.KYC_REQUIRED,
    WithheldReason.REPUTATION_TOO_LOW,
    WithheldReason.DEVICE_NOT_COMPLIANT,
  ]);
  assert.equal(reward.buzAwarded, 0n);
  assert.equal(reward.xpAwarded, 126n); // round_half_up(150 × 1.2 × 0.7)
  const replay = await system.wallet.recordTaskAccepted(task);
  assert.equal(replay.replay, true);
  // The same task for a venture that does not exist: a typed NOT_FOUND.
  await assert.rejects(
    system.wallet.recordTaskAccepted({ ...task, taskId: `ts-task-${randomUUID()}`, ventureId: randomUUID() }),
    (err) => {
      const e = apiError(err);
      assert.equal(e.code, Code.NotFound);
      assert.equal(e.reason, "NOT_FOUND");
      return true;
    },
  );
  // An admin's adjustment is the wallet's first ledger entry.
  const admin = createSmartStartClient(baseUrl, { token: token(randomUUID(), ["admin"]) });
  await admin.wallet.adjustBalance({
    requestId: randomUUID(),
    userId: user.userId,
    delta: 25n,
    reason: "TypeScript welcome",
  });

  const me: SmartStartClient = createSmartStartClient(baseUrl, { token: () => token(user.userId, ["user"]) });
  const wallet = await me.wallet.getMyWallet({});
  assert.equal(wallet.userId, user.userId);
  assert.equal(wallet.buzBalance, 25n);
  const ledger = await me.wallet.listLedgerEntries({});
  assert.deepEqual(
    ledger.entries.map((e) => [e.type, e.amount, e.note]),
    [[LedgerEntryType.ADJUST, 25n, "TypeScript welcome"]],
  );
  assert.equal(ledger.nextPageToken, "");

  // Another user's wallet: PERMISSION_DENIED; a bad field: INVALID_ARGUMENT naming it.
  await assert.rejects(me.wallet.listLedgerEntries({ userId: reviewer.userId }), (err) => {
    assert.equal(apiError(err).reason, "PERMISSION_DENIED");
    return true;
  });
  await assert.rejects(
    system.profile.registerUser({ requestId: randomUUID(), externalId: "x", email: "nope", displayName: "X" }),
    (err) => {
      const e = apiError(err);
      assert.equal(e.code, Code.InvalidArgument);
      assert.deepEqual(e.fieldViolations.map(([field]) => field), ["email"]);
      return true;
    },
  );
  // No token on an authenticated RPC.
  await assert.rejects(createSmartStartClient(baseUrl).wallet.getMyWallet({}), (err) => {
    assert.equal(apiError(err).reason, "UNAUTHENTICATED");
    return true;
  });
});
