// Issue 16 finding 8 (http:// integrations): MCIAS, Metacrypt and MCNS receive bearer tokens (and
// MCIAS passwords), so an http:// server_url is refused — at config load with one line naming
// the file and key, and by the clients themselves — unless the section says insecure_http = true
// (for tests), which is then honoured: a real plain-HTTP server on 127.0.0.1 is reached.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MciasClient, MciasError } from "../../../src/auth/mcias.ts";
import { loadAgentConfig } from "../../../src/config/agent.ts";
import { loadCliConfig } from "../../../src/config/cli.ts";
import { ConfigError } from "../../../src/config/errors.ts";
import { loadMasterConfig } from "../../../src/config/master.ts";
import { McnsClient } from "../../../src/integrations/mcns.ts";
import { MetacryptClient } from "../../../src/integrations/metacrypt.ts";
import { IntegrationError } from "../../../src/integrations/types.ts";
import { tempDir, thrown, writeTemp } from "./helpers.ts";

const dir = tempDir();

const SERVER = `[server]
grpc_addr = "127.0.0.1:9444"
tls_cert = "/srv/mcp/certs/cert.pem"
tls_key = "/srv/mcp/certs/key.pem"
`;
const mcias = (url: string, extra = "") => `[mcias]\nserver_url = "${url}"\n${extra}`;
const agent = (sections: string) => `${SERVER}[agent]\nnode_name = "n1"\n${sections}`;
const metacrypt = (url: string, extra = "") =>
  `[auth]\nmode = "local"\n[[auth.tokens]]\nname = "a"\nrole = "admin"\nsha256 = "${"a".repeat(64)}"\n[metacrypt]\nserver_url = "${url}"\ntoken_path = "/t"\n${extra}`;
const mcns = (url: string, extra = "") =>
  `[auth]\nmode = "local"\n[[auth.tokens]]\nname = "a"\nrole = "admin"\nsha256 = "${"a".repeat(64)}"\n[mcns]\nserver_url = "${url}"\ntoken_path = "/t"\n${extra}`;

const HTTP = "http://127.0.0.1:8443";
const refusal = (key: string) =>
  `${key}: expected an https:// URL (http:// sends the bearer token in clear; insecure_http = true allows it, for tests), got "${HTTP}"`;

function loadErr(load: (f: string) => unknown, text: string): string {
  const f = writeTemp(dir, text);
  const e = thrown(() => load(f));
  expect(e).toBeInstanceOf(ConfigError);
  expect(e.message).not.toContain("\n");
  expect(e.message.startsWith(`${f}: `)).toBe(true);
  return e.message.slice(f.length + 2);
}

describe("config load refuses http:// for token-bearing services", () => {
  test("agent [mcias], [metacrypt], [mcns]; master [mcias]; CLI [mcias]", () => {
    expect(loadErr(loadAgentConfig, agent(mcias(HTTP)))).toBe(refusal("mcias.server_url"));
    expect(loadErr(loadAgentConfig, agent(metacrypt(HTTP)))).toBe(refusal("metacrypt.server_url"));
    expect(loadErr(loadAgentConfig, agent(mcns(HTTP)))).toBe(refusal("mcns.server_url"));
    expect(loadErr(loadMasterConfig, `${SERVER}${mcias(HTTP)}`)).toBe(refusal("mcias.server_url"));
    expect(loadErr(loadCliConfig, mcias(HTTP))).toBe(refusal("mcias.server_url"));
  });

  test("insecure_http = true lets each section through; https:// needs nothing", () => {
    const yes = "insecure_http = true\n";
    expect(loadAgentConfig(writeTemp(dir, agent(mcias(HTTP, yes)))).config.mcias?.insecure_http).toBe(true);
    expect(loadAgentConfig(writeTemp(dir, agent(metacrypt(HTTP, yes)))).config.metacrypt?.server_url).toBe(
      HTTP,
    );
    expect(loadAgentConfig(writeTemp(dir, agent(mcns(HTTP, yes)))).config.mcns?.server_url).toBe(HTTP);
    expect(loadMasterConfig(writeTemp(dir, `${SERVER}${mcias(HTTP, yes)}`)).config.mcias?.server_url).toBe(
      HTTP,
    );
    expect(loadCliConfig(writeTemp(dir, mcias(HTTP, yes))).config.mcias?.insecure_http).toBe(true);
    expect(loadCliConfig(writeTemp(dir, mcias("https://mcias.example.net"))).config.mcias?.server_url).toBe(
      "https://mcias.example.net",
    );
  });
});

describe("the clients refuse http:// unless told otherwise", () => {
  let plain: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    plain = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ status: "ok" }) });
  });
  afterAll(() => plain.stop(true));

  test("MciasClient, MetacryptClient, McnsClient: one line, before any request", () => {
    const e = thrown(() => new MciasClient({ serverUrl: HTTP, serviceName: "mcp" }));
    expect(e).toBeInstanceOf(MciasError);
    expect(e.message).toBe(
      "mcias server_url must be https:// (tokens are not sent in clear; insecure_http = true allows http:// for tests), got http:",
    );
    const m = thrown(() => new MetacryptClient({ serverUrl: HTTP, token: "t", certDir: dir }));
    expect(m).toBeInstanceOf(IntegrationError);
    expect(m.message).toContain("server_url must be https://");
    const d = thrown(() => new McnsClient({ serverUrl: HTTP, token: "t" }));
    expect(d).toBeInstanceOf(IntegrationError);
    expect(d.message).toContain("server_url must be https://");
  });

  test("insecureHttp is honoured: a plain-HTTP MCIAS on 127.0.0.1 answers health", async () => {
    const c = new MciasClient({
      serverUrl: `http://127.0.0.1:${plain.port}`,
      serviceName: "mcp",
      insecureHttp: true,
    });
    await c.health();
  });
});
