// Registry records as the status rows the agent answers with (ListServices, LiveCheck,
// GetServiceStatus): the component's state, version, ports and routes with their host ports.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DEFAULT_VM_MEMORY } from "../../config/unikernel.ts";
import {
  type ComponentInfo,
  ComponentInfoSchema,
  type ServiceInfo,
  ServiceInfoSchema,
} from "../../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord, ServiceRecord } from "../../registry/types.ts";

export function componentInfo(c: ComponentRecord, started?: Date | null): ComponentInfo {
  return create(ComponentInfoSchema, {
    name: c.name,
    image: c.image,
    desiredState: c.desiredState,
    observedState: c.observedState,
    version: c.version,
    started: started ? timestampFromDate(started) : undefined,
    ports: c.ports,
    runtime: c.runtime,
    // A VM always has a memory size: the default when the definition sets none.
    memory: c.memory || (c.runtime === "unikernel" ? DEFAULT_VM_MEMORY : ""),
    routes: c.routes.map((r) => ({
      name: r.name,
      port: r.port,
      mode: r.mode,
      hostname: r.hostname,
      public: r.public,
      hostPort: r.hostPort,
    })),
  });
}

export function serviceInfo(s: ServiceRecord, started?: (c: ComponentRecord) => Date | null): ServiceInfo {
  return create(ServiceInfoSchema, {
    name: s.name,
    active: s.active,
    components: s.components.map((c) => componentInfo(c, started?.(c))),
  });
}
