// The token validator a daemon (agent or master) uses, built from its [auth] and [mcias]
// sections: local tokens by SHA-256, or MCIAS behind the 30 s SHA-256-keyed cache.
import { resolve } from "node:path";
import type { TokenValidator } from "./identity.ts";
import { LocalTokenValidator } from "./local.ts";
import { CachedValidator, MciasClient } from "./mcias.ts";

export interface AuthSections {
  auth: {
    mode: "mcias" | "local";
    tokens: {
      name: string;
      role: "admin" | "user" | "guest";
      account_type: "human" | "system";
      sha256: string;
      expires?: string;
    }[];
  };
  mcias?: {
    server_url: string;
    ca_cert: string;
    service_name: string;
    validate_path: string;
    insecure_http?: boolean | undefined;
  };
}

/** `base`: the config file's directory, for a relative [mcias] ca_cert. */
export function validatorFromConfig(cfg: AuthSections, base: string): TokenValidator {
  if (cfg.auth.mode === "local") {
    return new LocalTokenValidator(
      cfg.auth.tokens.map((t) => ({
        name: t.name,
        role: t.role,
        accountType: t.account_type,
        sha256: t.sha256,
        ...(t.expires ? { expires: t.expires } : {}),
      })),
    );
  }
  const m = cfg.mcias!;
  return new CachedValidator(
    new MciasClient({
      serverUrl: m.server_url,
      caCertPath: m.ca_cert ? resolve(base, m.ca_cert) : undefined,
      serviceName: m.service_name,
      validatePath: m.validate_path,
      insecureHttp: m.insecure_http === true,
    }),
  );
}
