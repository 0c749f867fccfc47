using System.Globalization;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Lifeline.AppHost.Infrastructure;
using Lifeline.AppHost.Secrets;
using Lifeline.AppHost.Supervision;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.AppHost;

/// <summary>
/// The suite as Aspire resources: PostgreSQL and Redis (local executables, or external servers from configuration),
/// a database and login role per service (provisioned just before the service starts), every service a project with
/// a free loopback gRPC port, and the gateway — the only external endpoint — in front of them.
/// </summary>
internal static class LifelineSuite
{
    private const string PostgresName = "postgres";
    private const string RedisName = "redis";

    /// <summary>Adds every resource and returns the lines to print (gateway addresses and development keys).</summary>
    public static IReadOnlyList<string> Compose(IDistributedApplicationBuilder builder, AppHostOptions options)
    {
        var layout = RepositoryLayout.Locate(builder.AppHostDirectory, options.DataDirectory);
        var secrets = SecretStore.Open(layout.SecretsFile);
        ConfigureDashboard(builder, options);
        builder.Services.AddHostedService<CrashRestarter>();
        builder.Services.AddHostedService<OrderlyShutdown>();
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(90));

        var (postgres, adminConnectionString) = AddPostgres(builder, options, layout, secrets);
        var redis = AddRedis(builder, options, layout);
        var identityKey = secrets.GetOrCreateIdentitySigningKey();

        var registry = AddService(builder, builder.AddProject<Projects.Lifeline_Registry>("registry", ExcludeLaunchProfile), identityKey)
            .WithDatabase(builder, postgres, adminConnectionString, "registrydb", secrets)
            .WithReference(redis).WaitFor(redis);
        // The queue admits only workers the registry knows (its Redis mirror) and reports outcomes to it.
        var queue = AddService(builder, builder.AddProject<Projects.Lifeline_Queue>("queue", ExcludeLaunchProfile), identityKey)
            .WithDatabase(builder, postgres, adminConnectionString, "queuedb", secrets)
            .WithReference(redis).WaitFor(redis)
            .WaitFor(registry);
        // Versioned workflow state and artifacts; PostgreSQL only.
        var checkpoint = AddService(builder, builder.AddProject<Projects.Lifeline_Checkpoint>("checkpoint", ExcludeLaunchProfile), identityKey)
            .WithDatabase(builder, postgres, adminConnectionString, "checkpointdb", secrets);
        // Puts in-flight work right after crashes; talks to the others only through their contracts.
        var recovery = AddService(builder, builder.AddProject<Projects.Lifeline_Recovery>("recovery", ExcludeLaunchProfile), identityKey)
            .WithDatabase(builder, postgres, adminConnectionString, "recoverydb", secrets)
            .WithReference(redis).WaitFor(redis)
            .WaitFor(queue).WaitFor(registry).WaitFor(checkpoint)
            .WithEnvironment("Recovery__Tenants__0", "default")
            .WithEnvironment("Recovery__Tenants__1", "acme");
        // Backs up the other services' databases with the admin connection: logical decoding needs REPLICATION, a
        // publication FOR ALL TABLES and applying changes need a superuser, and a restore creates, renames and switches
        // databases (services/Lifeline.Backup/README.md, "Rights"). Its own catalog is backupdb, which it does not back up.
        var backup = AddService(builder, builder.AddProject<Projects.Lifeline_Backup>("backup", ExcludeLaunchProfile), identityKey)
            .WithDatabase(builder, postgres, adminConnectionString, "backupdb", secrets)
            .WithReference(postgres, connectionName: "postgres_admin")
            .WaitFor(queue).WaitFor(registry).WaitFor(checkpoint).WaitFor(recovery)
            .WithEnvironment("Backup__Directory", layout.BackupDirectory);
        foreach (var target in (string[])["queuedb", "registrydb", "checkpointdb", "recoverydb"])
        {
            backup.WithEnvironment($"Backup__Targets__{target}__Connection", "postgres_admin")
                .WithEnvironment($"Backup__Targets__{target}__Database", target);
        }

        IResourceBuilder<ProjectResource>[] services = [registry, queue, checkpoint, recovery, backup];
        // Prometheus scrapes over HTTP/1.1 and the services' own port is HTTP/2 only: each gets a loopback listener
        // for /metrics (Telemetry__PrometheusPort), in the order of the scrape configuration in services/Lifeline.ServiceDefaults/README.md.
        var metrics = new List<string>();
        IResourceBuilder<ProjectResource>[] scrapeOrder = [queue, registry, checkpoint, recovery, backup];
        for (var i = 0; i < scrapeOrder.Length; i++)
        {
            var port = options.ResolveMetricsPort(i);
            scrapeOrder[i].WithHttpEndpoint(name: "metrics", port: port, isProxied: false, env: "Telemetry__PrometheusPort")
                .WithEndpoint("metrics", endpoint => endpoint.TargetHost = "127.0.0.1");
            metrics.Add($"{scrapeOrder[i].Resource.Name} http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}/metrics");
        }

        foreach (var service in services)
        {
            foreach (var other in services.Where(s => s != service))
            {
                service.WithReference(other.GetEndpoint("grpc"));
            }
        }

        return [.. AddGateway(builder, options, layout, secrets, identityKey, services), $"Prometheus: {string.Join(", ", metrics)}"];
    }

    /// <summary>One instance per check for the AppHost's lifetime (the service check keeps one HttpClient).</summary>
    private static void AddHealthCheck(this IDistributedApplicationBuilder builder, string key, IHealthCheck check) =>
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(key, check, failureStatus: null, tags: null));

    private static void ExcludeLaunchProfile(ProjectResourceOptions options)
    {
        // The launch profiles' fixed ports are for running one service alone; here every port is allocated.
        options.ExcludeLaunchProfile = true;
        options.ExcludeKestrelEndpoints = true;
    }

    /// <summary>A service: a free loopback gRPC port (cleartext HTTP/2), /health as its health check, the suite's identity key.</summary>
    private static IResourceBuilder<ProjectResource> AddService(
        IDistributedApplicationBuilder builder, IResourceBuilder<ProjectResource> project, string identityKey)
    {
        project.WithHttpEndpoint(name: "grpc", isProxied: false)
            .WithEndpoint("grpc", endpoint => endpoint.TargetHost = "127.0.0.1")
            .WithEnvironment("Lifeline__Identity__SigningKey", identityKey)
            .WithEnvironment("Logging__Console__FormatterName", "simple")
            .WithEnvironment("Logging__Console__FormatterOptions__SingleLine", "true")
            .WithAnnotation(new RestartOnCrashAnnotation())
            .WithAnnotation(new ShutdownOrderAnnotation(1));
        var endpoint = project.GetEndpoint("grpc");
        return project.WithServiceHealthCheck(builder, () => new Uri(endpoint.Url), System.Net.HttpVersion.Version20);
    }

    private static IResourceBuilder<T> WithServiceHealthCheck<T>(
        this IResourceBuilder<T> resource, IDistributedApplicationBuilder builder, Func<Uri> address, Version httpVersion) where T : IResource
    {
        var key = $"{resource.Resource.Name}-health";
        builder.AddHealthCheck(key, new ServiceHealthCheck(address, httpVersion));
        return resource.WithHealthCheck(key);
    }

    /// <summary>
    /// The service's own database (<c>ConnectionStrings__{database}</c>), owned by a login role named after the
    /// service with a password from secrets.json; the role and database are created or corrected just before each
    /// start of the service, once PostgreSQL is healthy.
    /// </summary>
    private static IResourceBuilder<ProjectResource> WithDatabase(
        this IResourceBuilder<ProjectResource> service,
        IDistributedApplicationBuilder builder,
        IResourceBuilder<IResourceWithConnectionString> postgres,
        string adminConnectionString,
        string database,
        SecretStore secrets)
    {
        var role = service.Resource.Name;
        var grant = new DatabaseGrant(role, database, secrets.GetOrCreateRolePassword(role));
        var connectionString = new NpgsqlConnectionStringBuilder(adminConnectionString)
        {
            Username = grant.Role,
            Password = grant.Password,
            Database = grant.Database,
        }.ConnectionString;
        var databaseResource = builder.AddConnectionString(database, ReferenceExpression.Create($"{connectionString}"));
        return service
            .WithReference(databaseResource)
            .WaitFor(postgres)
            .OnBeforeResourceStarted(async (resource, started, cancellationToken) =>
            {
                var notifications = started.Services.GetRequiredService<ResourceNotificationService>();
                var logger = started.Services.GetRequiredService<ResourceLoggerService>().GetLogger(resource);
                await notifications.WaitForResourceHealthyAsync(postgres.Resource.Name, cancellationToken).ConfigureAwait(false);
                await DatabaseProvisioner.ProvisionAsync(adminConnectionString, [grant], logger, cancellationToken).ConfigureAwait(false);
            });
    }

    private static (IResourceBuilder<IResourceWithConnectionString> Resource, string AdminConnectionString) AddPostgres(
        IDistributedApplicationBuilder builder, AppHostOptions options, RepositoryLayout layout, SecretStore secrets)
    {
        if (options.ExternalPostgres is { } given)
        {
            builder.Configuration[$"ConnectionStrings:{PostgresName}"] = given;
        }

        if (builder.Configuration.GetConnectionString(PostgresName) is { Length: > 0 } external)
        {
            var server = builder.AddConnectionString(PostgresName);
            builder.AddHealthCheck($"{PostgresName}-health", new PostgresHealthCheck(() => external));
            return (server.WithHealthCheck($"{PostgresName}-health"), external);
        }

        if (File.Exists(Path.Combine(layout.PostgresDirectory, "data", "PG_VERSION")) && secrets.PostgresSuperuserPassword is null)
        {
            throw new AppHostException(
                $"The cluster in {layout.PostgresDirectory} exists but {layout.SecretsFile} has no superuser password for it. " +
                $"Restore secrets.json, or delete {layout.PostgresDirectory} to initialise a new (empty) cluster.");
        }

        var port = options.Resolve(options.PostgresPort, AppHostOptions.DefaultPostgresPort);
        var password = secrets.GetOrCreatePostgresSuperuserPassword();
        var script = Path.Combine(builder.AppHostDirectory, "postgres.sh");
        var local = new LocalPostgresResource(PostgresName, script, layout.DataDirectory, port, password);
        builder.AddHealthCheck($"{PostgresName}-health", new PostgresHealthCheck(() => local.AdminConnectionString));
        var resource = builder.AddResource(local)
            .WithArgs(layout.PostgresDirectory, port.ToString(CultureInfo.InvariantCulture))
            .WithEnvironment("LIFELINE_PG_SUPERUSER_PASSWORD", password)
            .WithEndpoint(name: "tcp", port: port, targetPort: port, scheme: "tcp", isProxied: false)
            .WithEndpoint("tcp", endpoint => endpoint.TargetHost = "127.0.0.1")
            .WithHealthCheck($"{PostgresName}-health")
            .WithAnnotation(new RestartOnCrashAnnotation())
            .WithAnnotation(new ShutdownOrderAnnotation(3));
        return (resource, local.AdminConnectionString);
    }

    private static IResourceBuilder<IResourceWithConnectionString> AddRedis(
        IDistributedApplicationBuilder builder, AppHostOptions options, RepositoryLayout layout)
    {
        if (options.ExternalRedis is { } given)
        {
            builder.Configuration[$"ConnectionStrings:{RedisName}"] = given;
        }

        if (builder.Configuration.GetConnectionString(RedisName) is { Length: > 0 } external)
        {
            builder.AddHealthCheck($"{RedisName}-health", new RedisHealthCheck(() => external));
            return builder.AddConnectionString(RedisName).WithHealthCheck($"{RedisName}-health");
        }

        var executable = Environment.GetEnvironmentVariable("LIFELINE_REDIS_SERVER") is { Length: > 0 } configured
            ? configured
            : new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists)
              ?? throw new AppHostException("redis-server was not found. Run build/setup.sh, or pass --redis with an existing server.");
        var port = options.Resolve(options.RedisPort, AppHostOptions.DefaultRedisPort);
        Directory.CreateDirectory(layout.RedisDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var local = new LocalRedisResource(RedisName, executable, layout.RedisDirectory, port);
        var connection = $"127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        builder.AddHealthCheck($"{RedisName}-health", new RedisHealthCheck(() => connection));
        return builder.AddResource(local)
            .WithArgs(
                "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", layout.RedisDirectory,
                "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--logfile", "")
            .WithEndpoint(name: "tcp", port: port, targetPort: port, scheme: "tcp", isProxied: false)
            .WithEndpoint("tcp", endpoint => endpoint.TargetHost = "127.0.0.1")
            .WithHealthCheck($"{RedisName}-health")
            .WithAnnotation(new RestartOnCrashAnnotation())
            .WithAnnotation(new ShutdownOrderAnnotation(2));
    }

    /// <summary>
    /// The single front door (gRPC on one port, REST on another: cleartext HTTP/2 cannot share a port with HTTP/1.1),
    /// routing to every service by its <c>services__name__grpc__0</c>. It gets the development API keys as hashes only;
    /// the keys themselves are printed and written to credentials.json.
    /// </summary>
    private static IReadOnlyList<string> AddGateway(
        IDistributedApplicationBuilder builder, AppHostOptions options, RepositoryLayout layout, SecretStore secrets, string identityKey,
        IReadOnlyList<IResourceBuilder<ProjectResource>> services)
    {
        var grpcPort = options.Resolve(options.GatewayPort, AppHostOptions.DefaultGatewayPort);
        var restPort = options.Resolve(options.GatewayRestPort, AppHostOptions.DefaultGatewayRestPort);
        var gateway = builder.AddProject<Projects.Lifeline_Gateway>("gateway", ExcludeLaunchProfile)
            .WithHttpEndpoint(name: "grpc", port: grpcPort, isProxied: false)
            .WithHttpEndpoint(name: "rest", port: restPort, isProxied: false)
            .WithEndpoint("grpc", endpoint => endpoint.TargetHost = "127.0.0.1")
            .WithEndpoint("rest", endpoint => endpoint.TargetHost = "127.0.0.1")
            .WithExternalHttpEndpoints()
            .WithEnvironment("Gateway__GrpcEndpoint", $"127.0.0.1:{grpcPort.ToString(CultureInfo.InvariantCulture)}")
            .WithEnvironment("Gateway__RestEndpoint", $"127.0.0.1:{restPort.ToString(CultureInfo.InvariantCulture)}")
            // Two listeners of different protocols, configured above: not ASPNETCORE_URLS.
            .WithEnvironment(context => context.EnvironmentVariables.Remove("ASPNETCORE_URLS"))
            .WithEnvironment("Lifeline__Identity__SigningKey", identityKey)
            .WithEnvironment("Logging__Console__FormatterName", "simple")
            .WithEnvironment("Logging__Console__FormatterOptions__SingleLine", "true")
            .WithAnnotation(new RestartOnCrashAnnotation())
            .WithAnnotation(new ShutdownOrderAnnotation(0));
        var rest = new Uri($"http://127.0.0.1:{restPort.ToString(CultureInfo.InvariantCulture)}");
        var grpc = new Uri($"http://127.0.0.1:{grpcPort.ToString(CultureInfo.InvariantCulture)}");
        gateway.WithServiceHealthCheck(builder, () => rest, System.Net.HttpVersion.Version11);

        var keys = secrets.GetOrCreateApiKeys(DevelopmentCredentials.Wanted);
        foreach (var (name, value) in DevelopmentCredentials.GatewayEnvironment(keys))
        {
            gateway.WithEnvironment(name, value);
        }

        foreach (var service in services)
        {
            gateway.WithReference(service.GetEndpoint("grpc")).WaitFor(service);
        }

        DevelopmentCredentials.Write(layout.CredentialsFile, grpc, rest, keys);
        return [$"data in {layout.DataDirectory}", .. DevelopmentCredentials.Describe(layout.CredentialsFile, grpc, rest, keys)];
    }

    /// <summary>
    /// The dashboard over plain HTTP on loopback (there is no trusted development certificate here), its OTLP receiver on
    /// the next port; with <c>--anonymous-dashboard</c> without its login token. Settings already in the configuration win.
    /// </summary>
    private static void ConfigureDashboard(IDistributedApplicationBuilder builder, AppHostOptions options)
    {
        var port = options.Resolve(options.DashboardPort, AppHostOptions.DefaultDashboardPort);
        var otlpPort = options.DashboardOtlpPort is { } given ? options.Resolve(given, 0) : options.DashboardPort == 0 ? options.Resolve(0, 0) : port + 1;
        builder.Configuration["ASPNETCORE_URLS"] ??= $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        builder.Configuration["ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL"] ??= $"http://127.0.0.1:{otlpPort.ToString(CultureInfo.InvariantCulture)}";
        builder.Configuration["ASPIRE_ALLOW_UNSECURED_TRANSPORT"] = "true";
        if (options.AnonymousDashboard)
        {
            builder.Configuration["ASPIRE_DASHBOARD_UNSECURED_ALLOW_ANONYMOUS"] = "true";
        }
    }
}
