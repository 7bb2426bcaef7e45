// unikernel-deploy: `mcp deploy` of a Nanos VM (the fixture HTTP server, FROM scratch, from a local
// registry) to its first successful HTTP answer through the forwarded route port, against the raw
// sequence in the same run (mkfs of the same manifest + QEMU started with the same command line +
// first answer). Each round starts with no VM of the service (an untimed `mcp undeploy` on the mcp
// side, a killed QEMU on the raw side), so both sides boot from nothing. Then the memory an idle VM
// costs (QEMU's RSS plus what the runtime keeps per VM: no process of its own, its per-VM files on
// disk) beside the same program run as a container (its process plus conmon).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stateFiles, waitReady } from "../../src/runtime/nanos/qemu.ts";
import { mcpBinary } from "../../test/support/binary.ts";
import { freePort, podman, podmanEnv, startRegistry } from "../../test/support/env.ts";
import { startLocalAgent } from "../../test/support/local-agent.ts";
import { buildHttpdImage, nanosDir, qemuPidsNamed, removeHttpdImages } from "../../test/support/unikernel.ts";
import { abRounds, type Bench, type Measure, measure, timeSpawn } from "./lib.ts";

const SVC = "mcpbench-vm";
const VM = `${SVC}-web`;

/**
 * The first HTTP answer through the forward (nanos/qemu.ts waitReady: a byte back). Slirp accepts
 * before the guest listens and such an attempt hangs until its timeout, so a short one (100 ms)
 * keeps both sides' figures from moving in steps of the timeout.
 */
async function firstAnswer(port: number): Promise<void> {
  if (!(await waitReady("127.0.0.1", port, 30_000, undefined, 100)))
    throw new Error(`no HTTP answer on 127.0.0.1:${port} within 30 s`);
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

export const unikernelDeployBench: Bench = async (ctx) => {
  const registry = await startRegistry();
  ctx.defer(() => registry.stop());
  const image = await buildHttpdImage(registry.address, "v1.0.0");
  ctx.defer(() => removeHttpdImages());
  const agent = await startLocalAgent({ unikernel: true });
  ctx.defer(() => agent.stop());
  const accel = /\+unikernel \((\w+)/.exec((await agent.mcp(["agent", "status"])).stdout)?.[1] ?? "?";
  const port = await freePort();
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    [
      `name = "${SVC}"`,
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      'runtime = "unikernel"',
      'network = "user"',
      'memory = "64m"',
      'restart = "no"',
      `ports = ["127.0.0.1:${port}:8080"]`,
      'env = ["PORT=8080"]',
      "",
    ].join("\n"),
  );
  const undeploy = () => agent.mcp(["undeploy", SVC], { timeoutMs: 60_000 });
  ctx.defer(async () => {
    await undeploy();
  });

  // The raw side: the manifest and QEMU line of the VM mcp built (same image, same argv).
  const first = await agent.mcp(["deploy", SVC, "--pull", "missing"], { timeoutMs: 120_000 });
  if (first.code !== 0) throw new Error(`first deploy failed: ${first.stderr.trim()}`);
  await firstAnswer(port);
  const vmDir = join(agent.unikernelStateDir, "vms", VM);
  const qemuArgv = readFileSync(`/proc/${qemuPidsNamed(VM)[0]}/cmdline`, "utf8")
    .split("\0")
    .slice(0, -1);
  const nanos = nanosDir();
  const rawDir = mkdtempSync(join(tmpdir(), "mcpbench-rawvm-"));
  ctx.defer(() => rmSync(rawDir, { recursive: true, force: true }));
  // The program from the exported image, baked by the raw mkfs exactly as mcp bakes it.
  const rootfs = join(agent.unikernelStateDir, "rootfs");
  const id = (await podman("image", "inspect", "--format", "{{.Id}}", image)).stdout
    .trim()
    .replace(/^sha256:/, "");
  copyFileSync(join(rootfs, id, "httpd"), join(rawDir, "httpd"));
  const manifest = `(children:(httpd:(contents:(host:"${join(rawDir, "httpd")}"))) program:"/httpd" arguments:["/httpd"] environment:("PORT":"8080"))\n`;
  const rawState = join(rawDir, "run");
  mkdirSync(rawState);
  const rawImg = join(rawDir, "raw.img");
  // QEMU's line with the raw image and state files: everything else as mcp runs it.
  const files = stateFiles(vmDir);
  const rawFiles = stateFiles(rawState);
  const rawArgv = qemuArgv.map((a) =>
    a
      .replace(/file=[^,]*\.img/, `file=${rawImg}`)
      .replace(files.serial, rawFiles.serial)
      .replace(files.qmp, rawFiles.qmp)
      .replace(files.pid, rawFiles.pid),
  );
  // Between rounds the VM is killed (untimed), not undeployed: an undeploy prunes the image cache
  // (nothing needs it any more), and a deploy after it would measure the first export again.
  const killVm = async () => {
    for (const pid of qemuPidsNamed(VM)) process.kill(pid, "SIGKILL");
    for (let i = 0; i < 100 && qemuPidsNamed(VM).length > 0; i++) await Bun.sleep(20);
  };
  await killVm();

  const figure = await abRounds(
    "unikernel-deploy",
    {
      label: "mcp deploy (unikernel, --pull missing) → first HTTP answer",
      run: async () => {
        const t0 = performance.now();
        await timeSpawn([mcpBinary(), "deploy", SVC, "--pull", "missing"], agent.env);
        await firstAnswer(port);
        const ms = performance.now() - t0;
        await killVm();
        return ms;
      },
    },
    {
      label: "mkfs + qemu (same argv) → first HTTP answer",
      run: async () => {
        rmSync(rawImg, { force: true });
        const t0 = performance.now();
        const mk = Bun.spawn(
          [
            join(nanos, "mkfs"),
            "-b",
            join(nanos, "boot.img"),
            "-k",
            join(nanos, "kernel.img"),
            "-t",
            "(debug_exit:t)",
            rawImg,
          ],
          { stdin: new Blob([manifest]), stdout: "pipe", stderr: "pipe" },
        );
        if ((await mk.exited) !== 0)
          throw new Error(`raw mkfs failed: ${(await new Response(mk.stdout).text()).trim()} ${manifest}`);
        const q = Bun.spawn(rawArgv, { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
        try {
          await firstAnswer(port);
          return performance.now() - t0;
        } finally {
          q.kill("SIGKILL");
          await q.exited;
        }
      },
    },
    {
      rounds: ctx.opts.rounds,
      perRound: 1,
      target: { of: "ratio", max: 1.3 },
      notes: `accel ${accel}; each round boots from no running VM on both sides (QEMU killed between rounds, untimed)`,
    },
  );

  // Memory per idle VM beside the same program as a container.
  const d = await agent.mcp(["deploy", SVC, "--pull", "missing"], { timeoutMs: 120_000 });
  if (d.code !== 0) throw new Error(`deploy failed: ${d.stderr.trim()}`);
  await firstAnswer(port);
  await Bun.sleep(1000);
  const qemuPid = qemuPidsNamed(VM)[0]!;
  const vmKb: number[] = [];
  for (let i = 0; i < 5; i++) {
    vmKb.push(rssKb(qemuPid));
    await Bun.sleep(200);
  }
  const pe = await podmanEnv();
  const ctr = "mcpbench-vm-ctr";
  ctx.created.push(ctr);
  const cport = await freePort();
  await timeSpawn(
    [
      "podman",
      ...pe.globalArgs,
      "run",
      "-d",
      "--name",
      ctr,
      "-e",
      "PORT=8080",
      "-p",
      `127.0.0.1:${cport}:8080`,
      image,
    ],
    pe.env,
  );
  await firstAnswer(cport);
  await Bun.sleep(1000);
  const top = await timeSpawn(
    ["podman", ...pe.globalArgs, "inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}}", ctr],
    pe.env,
  );
  const [appPid, conmonPid] = top.stdout.trim().split(" ").map(Number) as [number, number];
  const ctrKb: number[] = [];
  for (let i = 0; i < 5; i++) {
    ctrKb.push(rssKb(appPid) + rssKb(conmonPid));
    await Bun.sleep(200);
  }
  const mem: Measure = measure("unikernel-idle-memory", "QEMU VmRSS of an idle VM", vmKb, {
    unit: "kB",
    notes: `idle VM: QEMU VmRSS at -m 64M (the runtime keeps no process per VM); the same program as a container: its process + conmon = ${Math.round(
      ctrKb.reduce((a, b) => a + b, 0) / ctrKb.length,
    )} kB`,
  });
  return [figure, mem];
};
