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
    // Ports kept for the rest of the suite: gateway 5100, checkpoint 5103, recovery 5104, backup 5105.
    public static IReadOnlyList<ServiceDefinition> Services { get; } =
    [
        new("registry", "services/Lifeline.Registry/Lifeline.Registry.csproj", [Endpoint.Grpc(5102)], Database: "registrydb", DependsOn: ["redis"]),
        // The queue admits only workers the registry knows (its Redis mirror) and reports outcomes to it.
        new("queue", "services/Lifeline.Queue/Lifeline.Queue.csproj", [Endpoint.Grpc(5101)], Database: "queuedb", DependsOn: ["redis", "registry"]),
    ];
}
