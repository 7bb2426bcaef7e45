// The CLI config's zod schema (SPEC §3.1): the full check with its exact messages and unknown-key
// warnings. cli.ts loads it only when the plain check (cli-fast.ts) does not accept a file as is,
// and the config reference (scripts/gen-config-docs.ts) is generated from it.
import { z } from "zod";
import {
  checkHttpsUnlessInsecure,
  checkUniqueNodeNames,
  hostPortString,
  insecureHttp,
  urlString,
} from "./load.ts";
import { archSchema, nameSchema } from "./names.ts";

export const cliSchema = z
  .strictObject({
    services: z.strictObject({ dir: z.string().min(1).optional() }).prefault({}),
    mcias: z
      .strictObject({
        server_url: urlString,
        ca_cert: z.string().default(""),
        service_name: z.string().min(1).default("mcp"),
        insecure_http: insecureHttp,
      })
      .check(checkHttpsUnlessInsecure)
      .optional(),
    auth: z
      .strictObject({
        token_path: z.string().min(1).optional(),
        username: z.string().min(1).optional(),
        password_file: z.string().min(1).optional(),
      })
      .prefault({}),
    tls: z.strictObject({ ca_cert: z.string().default("") }).optional(),
    master: z
      .strictObject({ address: hostPortString, addresses: z.array(hostPortString).default([]) })
      .optional(),
    nodes: z
      .array(
        z.strictObject({
          name: nameSchema,
          address: hostPortString,
          addresses: z.array(hostPortString).default([]),
          ssh: z.string().min(1).optional(),
          arch: archSchema,
        }),
      )
      .default([]),
  })
  .check((ctx) => {
    checkUniqueNodeNames(ctx);
  });
