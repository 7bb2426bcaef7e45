// Health checks shared by boot sequencing, deploy health gates and the monitor.
export { checkGrpc } from "./grpc.ts";
export { checkHttp } from "./http.ts";
export type { HealthCheck, HealthResult } from "./result.ts";
export { checkTcp } from "./tcp.ts";
export { sleepAbortable, type WaitOptions, type WaitResult, waitHealthy } from "./wait.ts";
