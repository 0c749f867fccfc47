using Lifeline.AppHost.Model;

namespace Lifeline.AppHost;

/// <summary>
/// The suite the apphost runs. A service joins with one entry: its name (also its PostgreSQL role,
/// <c>OTEL_SERVICE_NAME</c> and the <c>services__name__…</c> key others find it by), its project, its
/// gRPC port, its database and what it needs first. "postgres" and "redis" are the infrastructure;
/// naming a database implies "postgres". Dlls are taken from the project's bin/&lt;configuration&gt;/&lt;tfm&gt;.
/// </summary>
internal static class Composition
{
    // Ports: registry 5102, queue 5101, checkpoint 5103, recovery 5104, backup 5105 (all plus --service-port-offset).
    public static IReadOnlyList<ServiceDefinition> Services(AppHostOptions options, string dataDirectory) =>
    [
        new("registry", "services/Lifeline.Registry/Lifeline.Registry.csproj", [Endpoint.Grpc(5102 + options.ServicePortOffset)], Database: "registrydb", DependsOn: ["redis"]),
        // The queue admits only workers the registry knows (its Redis mirror) and reports outcomes to it.
        new("queue", "services/Lifeline.Queue/Lifeline.Queue.csproj", [Endpoint.Grpc(5101 + options.ServicePortOffset)], Database: "queuedb", DependsOn: ["redis", "registry"]),
        // Versioned workflow state and artifacts; PostgreSQL only.
        new("checkpoint", "services/Lifeline.Checkpoint/Lifeline.Checkpoint.csproj", [Endpoint.Grpc(5103 + options.ServicePortOffset)], Database: "checkpointdb"),
        // Puts in-flight work right after crashes; talks to the others only through their contracts.
        new("recovery", "services/Lifeline.Recovery/Lifeline.Recovery.csproj", [Endpoint.Grpc(5104 + options.ServicePortOffset)], Database: "recoverydb",
            DependsOn: ["redis", "queue", "registry", "checkpoint"],
            Environment: new Dictionary<string, string?> { ["Recovery__Tenants__0"] = "default", ["Recovery__Tenants__1"] = "acme" }),
        // Backs up the other services' databases. It reaches them with the admin connection: logical decoding needs
        // REPLICATION, a publication FOR ALL TABLES and applying changes need a superuser, and a restore creates,
        // renames and switches databases (see README "Backup"). Its own catalog is backupdb, which it does not back up.
        new("backup", "services/Lifeline.Backup/Lifeline.Backup.csproj", [Endpoint.Grpc(5105 + options.ServicePortOffset)], Database: "backupdb",
            DependsOn: ["queue", "registry", "checkpoint", "recovery"],
            Environment: new Dictionary<string, string?>
            {
                ["Backup__Directory"] = Path.Combine(dataDirectory, "backups"),
                ["Backup__Targets__queuedb__Connection"] = InfrastructureNames.PostgresAdmin,
                ["Backup__Targets__queuedb__Database"] = "queuedb",
                ["Backup__Targets__registrydb__Connection"] = InfrastructureNames.PostgresAdmin,
                ["Backup__Targets__registrydb__Database"] = "registrydb",
                ["Backup__Targets__checkpointdb__Connection"] = InfrastructureNames.PostgresAdmin,
                ["Backup__Targets__checkpointdb__Database"] = "checkpointdb",
                ["Backup__Targets__recoverydb__Connection"] = InfrastructureNames.PostgresAdmin,
                ["Backup__Targets__recoverydb__Database"] = "recoverydb",
            },
            PostgresAdmin: true),
        // The single front door: routes to every service it finds a services__<name>__grpc__0 for; its /health aggregates them.
        // It gets the development API keys (hashes only); FrontDoor makes the apphost print them and write credentials.json.
        new("gateway", "gateway/Lifeline.Gateway/Lifeline.Gateway.csproj",
            [Endpoint.Grpc(options.GatewayPort), Endpoint.Rest(options.GatewayRestPort)],
            DependsOn: ["queue", "registry", "checkpoint", "recovery", "backup"],
            Environment: new Dictionary<string, string?>
            {
                // Two listeners of different protocols, so not ASPNETCORE_URLS.
                ["ASPNETCORE_URLS"] = null,
                ["Gateway__GrpcEndpoint"] = $"127.0.0.1:{options.GatewayPort}",
                ["Gateway__RestEndpoint"] = $"127.0.0.1:{options.GatewayRestPort}",
            },
            FrontDoor: true),
    ];
}
