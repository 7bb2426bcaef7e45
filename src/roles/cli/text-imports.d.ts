// Files Bun embeds as text at build time (`import x from "….service" with { type: "text" }`):
// provision installs the systemd unit from deploy/systemd/ baked into the binary.
declare module "*.service" {
  const text: string;
  export default text;
}
