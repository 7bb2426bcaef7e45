// Entry point: chooses the role (CLI, agent daemon, master daemon) from argv[0] and the subcommand.
// Kept tiny so `mcp --version` does not load any command module.
declare const MCP_VERSION: string;
export const VERSION: string = typeof MCP_VERSION === "string" ? MCP_VERSION : "dev";

function main(): void {
  const argv = process.argv.slice(2);
  if (argv[0] === "--version" || argv[0] === "-V") {
    process.stdout.write(`mcp ${VERSION}\n`);
    return;
  }
  process.stderr.write("mcp: not wired yet\n");
  process.exitCode = 2;
}

main();
