using Aspire.Hosting.ApplicationModel;
using Npgsql;

namespace Lifeline.AppHost.Infrastructure;

/// <summary>
/// The suite's own PostgreSQL 15 cluster, run by <c>postgres.sh</c> as an executable (there is no container runtime
/// here, and Aspire's <c>AddPostgres</c> is a container). Its connection string is the superuser's: the AppHost
/// provisions the services' roles and databases with it, and the backup service gets it as <c>postgres_admin</c>.
/// </summary>
internal sealed class LocalPostgresResource(string name, string script, string rootDirectory, int port, string superuserPassword)
    : ExecutableResource(name, script, rootDirectory), IResourceWithConnectionString
{
    public int Port { get; } = port;

    public string AdminConnectionString { get; } = new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = port,
        Username = "postgres",
        Password = superuserPassword,
        Database = "postgres",
    }.ConnectionString;

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create($"{AdminConnectionString}");
}

/// <summary>A redis-server on 127.0.0.1 keeping its data (append-only file on) in the data directory.</summary>
internal sealed class LocalRedisResource(string name, string executable, string directory, int port)
    : ExecutableResource(name, executable, directory), IResourceWithConnectionString
{
    public int Port { get; } = port;

    /// <summary>StackExchange.Redis configuration, as services get it in <c>ConnectionStrings__redis</c>.</summary>
    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create($"127.0.0.1:{Port.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
}
