// The contract, loaded with @grpc/proto-loader from the .proto files copied into dist/proto at
// build time. Messages keep the proto's field names (snake_case), enums come as their names and
// 64-bit integers as strings; `types.ts` turns them into plain camelCase objects.
import * as path from "path";
import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";

const root = path.join(__dirname, "..", "proto");
const definition = loader.loadSync(
  [
    "agentregistry/v1/registry.proto", "agentregistry/v1/discovery.proto", "agentregistry/v1/catalog.proto",
    "agentregistry/v1/admin.proto",
  ],
  { includeDirs: [root], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = (grpc.loadPackageDefinition(definition) as any).agentregistry.v1;

export type ServiceClient = grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export type ServiceCtor = new (target: string, creds: grpc.ChannelCredentials, options?: object) => ServiceClient;

export const RegistryService: ServiceCtor = pkg.RegistryService;
export const DiscoveryService: ServiceCtor = pkg.DiscoveryService;
export const CatalogService: ServiceCtor = pkg.CatalogService;
export const AdminService: ServiceCtor = pkg.AdminService;
