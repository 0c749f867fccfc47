namespace Lifeline.AppHost.Model;

/// <summary>One service of the suite, as declared in <see cref="Composition"/>.</summary>
/// <param name="Name">Lowercase identifier: the PostgreSQL role, <c>OTEL_SERVICE_NAME</c> and the <c>services__{Name}__…</c> key.</param>
/// <param name="Project">The .csproj, relative to the repository root; the dll has the project's file name.</param>
/// <param name="Endpoints">Loopback endpoints; the first also answers <c>GET /health</c>.</param>
/// <param name="Database">The service's own PostgreSQL database (and <c>ConnectionStrings__{Database}</c>), if any.</param>
/// <param name="DependsOn">Resources that must be healthy first: "postgres", "redis" or other services.</param>
/// <param name="Environment">Extra environment variables of the service; a null value removes one (also one the apphost sets).</param>
/// <param name="FrontDoor">The gateway: it gets the development API keys (as hashes), which the apphost prints.</param>
/// <param name="PostgresAdmin">Also gets the admin connection as <c>ConnectionStrings__postgres_admin</c> (the backup service,
/// which dumps, restores and switches the other services' databases).</param>
internal sealed record ServiceDefinition(
    string Name,
    string Project,
    IReadOnlyList<Endpoint> Endpoints,
    string? Database = null,
    IReadOnlyList<string>? DependsOn = null,
    IReadOnlyDictionary<string, string?>? Environment = null,
    bool FrontDoor = false,
    bool PostgresAdmin = false)
{
    /// <summary>Declared dependencies plus "postgres" when the service has a database.</summary>
    public IReadOnlyList<string> Dependencies { get; } =
        [.. (DependsOn ?? []).Concat(Database is null ? [] : [InfrastructureNames.Postgres]).Distinct(StringComparer.Ordinal)];

    public Endpoint PrimaryEndpoint => Endpoints[0];

    public Uri HealthUri => new(PrimaryEndpoint.Url, "/health");
}

/// <summary>A named endpoint on 127.0.0.1, published to the others as <c>services__{service}__{Name}__0</c>.</summary>
internal sealed record Endpoint(string Name, int Port)
{
    /// <summary>Cleartext HTTP/2 (h2c), as every Lifeline service serves gRPC.</summary>
    public static Endpoint Grpc(int port) => new("grpc", port);

    /// <summary>REST over HTTP/1.1 (the gateway's second listener).</summary>
    public static Endpoint Rest(int port) => new("rest", port);

    public Uri Url => new($"http://127.0.0.1:{Port}");

    public override string ToString() => $"http://127.0.0.1:{Port}";
}

internal static class InfrastructureNames
{
    public const string Postgres = "postgres";
    public const string Redis = "redis";

    /// <summary>The connection string name under which a <see cref="ServiceDefinition.PostgresAdmin"/> service gets the admin connection.</summary>
    public const string PostgresAdmin = "postgres_admin";

    public static bool IsInfrastructure(string name) => name is Postgres or Redis;
}
