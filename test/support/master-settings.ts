// In-process masters for integration tests: the settings of a real master (startMaster) on a
// random 127.0.0.1 port with `tls`, its database (master.db) under `dir`, no bootstrap nodes, no
// allowed agents, short timeouts, a silent logger and version 0.0.0-test; `over` gives the
// validator, the CA and the master's client certificate, and replaces any of the rest.
import { join } from "node:path";
import pino from "pino";
import type { MasterSettings } from "../../src/roles/master/context.ts";

export function testMasterSettings(
  dir: string,
  tls: { certPem: string; keyPem: string },
  over: Pick<MasterSettings, "validator" | "caPem" | "clientCert"> & Partial<MasterSettings>,
): MasterSettings {
  return {
    grpcAddr: "127.0.0.1:0",
    allowAnyAddr: false,
    tlsCertPem: tls.certPem,
    tlsKeyPem: tls.keyPem,
    dbPath: join(dir, "master.db"),
    logger: pino({ level: "silent" }),
    version: "0.0.0-test",
    allowedDomains: [],
    timeouts: { deployMs: 10_000, edgeRouteMs: 5_000, healthCheckMs: 2_000, undeployMs: 10_000 },
    heartbeat: { intervalMs: 60_000, miss: 3, probeTimeoutMs: 1_000 },
    registration: { allowedAgents: [], maxNodes: 16 },
    bootstrapNodes: [],
    ...over,
  };
}
