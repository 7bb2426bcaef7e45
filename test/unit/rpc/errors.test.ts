// toStatus: the one mapping from thrown values to gRPC codes; messages are one line, never a stack.
import { describe, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { AuthError } from "../../../src/auth/identity.ts";
import { MciasError } from "../../../src/auth/mcias.ts";
import { ConfigError } from "../../../src/config/errors.ts";
import {
  failedPrecondition,
  invalidArgument,
  notFound,
  permissionDenied,
  RpcError,
  resourceExhausted,
  statusName,
  toStatus,
  unauthenticated,
  unavailable,
} from "../../../src/rpc/errors.ts";
import { RuntimeCapabilityError, RuntimeRouter } from "../../../src/runtime/router.ts";

describe("toStatus", () => {
  test("RpcError keeps its code and message", () => {
    expect(toStatus(new RpcError(status.ABORTED, "busy"))).toEqual({ code: status.ABORTED, details: "busy" });
    const helpers: [RpcError, number][] = [
      [invalidArgument("a"), status.INVALID_ARGUMENT],
      [notFound("a"), status.NOT_FOUND],
      [failedPrecondition("a"), status.FAILED_PRECONDITION],
      [permissionDenied("a"), status.PERMISSION_DENIED],
      [unauthenticated("a"), status.UNAUTHENTICATED],
      [resourceExhausted("a"), status.RESOURCE_EXHAUSTED],
      [unavailable("a"), status.UNAVAILABLE],
    ];
    for (const [err, code] of helpers) expect(toStatus(err)).toEqual({ code, details: "a" });
  });

  test("the runtime router's refusals → FAILED_PRECONDITION with their one line", () => {
    const router = new RuntimeRouter({ runtimes: [], node: "n1" });
    let thrown: unknown;
    try {
      router.runtimeFor("unikernel");
    } catch (e) {
      thrown = e;
    }
    expect(toStatus(thrown)).toEqual({
      code: status.FAILED_PRECONDITION,
      details: 'runtime "unikernel" is not available on node n1 (has: none)',
    });
    expect(toStatus(new RuntimeCapabilityError("container x: cannot exec")).code).toBe(
      status.FAILED_PRECONDITION,
    );
  });

  test("ConfigError → INVALID_ARGUMENT with its one-line message", () => {
    const e = new ConfigError("", "components[0].ports[0]", 'expected "host:container"');
    expect(toStatus(e)).toEqual({
      code: status.INVALID_ARGUMENT,
      details: 'components[0].ports[0]: expected "host:container"',
    });
  });

  test("AuthError → UNAUTHENTICATED or PERMISSION_DENIED", () => {
    expect(toStatus(new AuthError("unauthenticated", "token expired"))).toEqual({
      code: status.UNAUTHENTICATED,
      details: "token expired",
    });
    expect(toStatus(new AuthError("permission_denied", "gus may not operate"))).toEqual({
      code: status.PERMISSION_DENIED,
      details: "gus may not operate",
    });
  });

  test("plain errors → INTERNAL with the first line only, never the stack", () => {
    const e = new Error("podman failed: exit 125\nError: something\n  more detail");
    const s = toStatus(e);
    expect(s).toEqual({ code: status.INTERNAL, details: "podman failed: exit 125" });
    expect(s.details).not.toContain(" at ");
    // An MCIAS outage is not a verdict on the token: INTERNAL here, UNAVAILABLE in the interceptor.
    expect(toStatus(new MciasError("cannot reach mcias at https://x: refused")).code).toBe(status.INTERNAL);
  });

  test("non-Error throws still give one line", () => {
    expect(toStatus("boom\nsecond")).toEqual({ code: status.INTERNAL, details: "boom" });
    expect(toStatus(42)).toEqual({ code: status.INTERNAL, details: "42" });
    expect(toStatus(undefined).code).toBe(status.INTERNAL);
    expect(toStatus(null).code).toBe(status.INTERNAL);
  });
});

describe("statusName", () => {
  test("names known codes and falls back to the number", () => {
    expect(statusName(status.OK)).toBe("OK");
    expect(statusName(status.UNAUTHENTICATED)).toBe("UNAUTHENTICATED");
    expect(statusName(status.PERMISSION_DENIED)).toBe("PERMISSION_DENIED");
    expect(statusName(999)).toBe("999");
  });
});
