// A TCP listener that never accepts, with a zero-length backlog (perl, since node and Bun accept
// on their own): once one connection waits in the queue, further SYNs go unanswered — a real,
// local "no answer" for timeout tests.
export interface StuckListener {
  port: number;
  stop(): void;
}

const SCRIPT = [
  "use Socket; $| = 1;",
  'socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";',
  'bind($s, pack_sockaddr_in(0, inet_aton("127.0.0.1"))) or die "bind: $!";',
  'listen($s, 0) or die "listen: $!";',
  "my ($port) = unpack_sockaddr_in(getsockname($s));",
  'print "$port\\n"; sleep 60;',
].join(" ");

export async function stuckListener(): Promise<StuckListener> {
  const proc = Bun.spawn(["perl", "-e", SCRIPT], { stdout: "pipe", stderr: "inherit", stdin: "ignore" });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("perl listener exited before printing its port");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return { port: Number(text.trim()), stop: () => proc.kill("SIGKILL") };
}
