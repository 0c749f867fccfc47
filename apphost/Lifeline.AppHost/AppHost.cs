using System.Net.Sockets;
using Lifeline.AppHost.Model;
using Lifeline.AppHost.Output;
using Lifeline.AppHost.Postgres;
using Lifeline.AppHost.Processes;
using Lifeline.AppHost.Redis;
using Lifeline.AppHost.Secrets;
using Lifeline.AppHost.Services;
using Lifeline.AppHost.Supervision;

namespace Lifeline.AppHost;

/// <summary>
/// Brings the suite up in order (PostgreSQL, its roles and databases, Redis, then each service once what it
/// depends on is healthy), keeps it running, and takes it down in reverse order: services (dependents first),
/// Redis, PostgreSQL.
/// </summary>
internal sealed class AppHost(AppHostOptions options, RepositoryLayout layout, ServiceGraph graph, ConsoleOutput console)
{
    private readonly ResourceTable _table = new(console);
    private readonly PidFiles _pidFiles = new(layout.RunDirectory);
    private readonly List<ResourceSupervisor> _infrastructure = [];
    private readonly List<ResourceSupervisor> _services = [];
    private readonly Dictionary<string, Task> _ready = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<CancellationToken, Task<HealthResult>>> _externalChecks = new(StringComparer.Ordinal);

    /// <returns>0 after a clean shutdown (signal or <c>--exit-when-healthy</c>), 1 when something failed.</returns>
    public async Task<int> RunAsync(CancellationToken shutdown)
    {
        using var probe = new HealthProbe();
        var exitCode = 0;
        try
        {
            await StartAsync(probe, shutdown).ConfigureAwait(false);
            if (options.ExitWhenHealthy)
            {
                exitCode = await VerifyHealthyAsync(shutdown).ConfigureAwait(false);
            }
            else
            {
                // Report when the whole suite is up; a service that keeps crashing never gets there, and that is visible in the table.
                _ = Task.WhenAll(_ready.Values).ContinueWith(
                    _ =>
                    {
                        _table.Print(force: false);
                        console.Info($"all {_ready.Count} resources are healthy; Ctrl-C stops them");
                        if (graph.StartOrder.Any(s => s.FrontDoor))
                        {
                            console.Info($"gateway API keys are in {layout.CredentialsFile} (and printed above)");
                        }
                    },
                    CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
                await Task.Delay(Timeout.Infinite, shutdown).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
        {
            // Ctrl-C or SIGTERM: the ordinary way to stop.
        }
        catch (AppHostException ex)
        {
            console.Error(ex.Message);
            exitCode = 1;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            console.Error($"{ex.GetType().Name}: {ex.Message}");
            exitCode = 1;
        }
        finally
        {
            await StopAsync().ConfigureAwait(false);
        }

        console.Info(exitCode == 0 ? "stopped cleanly" : "stopped after an error");
        return exitCode;
    }

    private async Task StartAsync(HealthProbe probe, CancellationToken shutdown)
    {
        var assemblies = RequireBuiltAssemblies();
        Directory.CreateDirectory(layout.DataDirectory);
        // The postgres OS user must be able to pass through to .lifeline/postgres; secrets.json itself is 0600.
        File.SetUnixFileMode(layout.DataDirectory, File.GetUnixFileMode(layout.DataDirectory) | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        var secrets = SecretStore.Open(layout.SecretsFile);

        // Declare every resource (the table's rows), then start them in order.
        var connectionStrings = new Dictionary<string, string>(StringComparer.Ordinal);
        var postgres = graph.NeedsPostgres ? DeclarePostgres(secrets) : null;
        if (graph.NeedsRedis)
        {
            connectionStrings[InfrastructureNames.Redis] = DeclareRedis();
        }

        var grants = graph.StartOrder
            .Where(s => s.Database is not null)
            .Select(s => new DatabaseGrant(s.Name, s.Database!, secrets.GetOrCreateRolePassword(s.Name)))
            .ToList();
        foreach (var grant in grants)
        {
            connectionStrings[grant.Database] = postgres!.ForService(grant);
        }

        if (postgres is not null)
        {
            connectionStrings[InfrastructureNames.PostgresAdmin] = postgres.AdminConnectionString;
        }

        var credentialLines = new List<string>();
        // The key the gateway signs callers' identities with and every service verifies them with.
        var identityKey = secrets.GetOrCreateIdentitySigningKey();
        foreach (var service in graph.StartOrder)
        {
            var environment = ServiceEnvironment.Build(service, graph.StartOrder, connectionStrings);
            environment["Lifeline__Identity__SigningKey"] = identityKey;
            if (service.FrontDoor)
            {
                var keys = secrets.GetOrCreateApiKeys(DevelopmentCredentials.Wanted);
                foreach (var (name, value) in DevelopmentCredentials.GatewayEnvironment(keys))
                {
                    environment[name] = value;
                }

                DevelopmentCredentials.Write(layout.CredentialsFile, service, keys);
                credentialLines.AddRange(DevelopmentCredentials.Describe(layout.CredentialsFile, service, keys));
            }

            AddSupervised(new ServiceProcess(service, assemblies[service.Name], environment, probe, _pidFiles), _services, failFast: false);
        }

        console.Info($"repository {layout.Root}; data in {layout.DataDirectory}; services from bin/{layout.Configuration}/{layout.TargetFramework}");
        credentialLines.ForEach(console.Info);

        // Leftovers of an apphost that was killed outright, dependents first; then make sure our ports are free.
        foreach (var supervisor in Enumerable.Reverse(_services).Concat(Enumerable.Reverse(_infrastructure)))
        {
            await supervisor.Resource.StopLeftoverAsync(console.Info).ConfigureAwait(false);
        }

        await RequirePortsFreeAsync(shutdown).ConfigureAwait(false);
        _table.Print();

        await StartInfrastructureAsync(shutdown).ConfigureAwait(false);
        if (grants.Count > 0)
        {
            await DatabaseProvisioner.ProvisionAsync(postgres!.AdminConnectionString, grants, console, shutdown).ConfigureAwait(false);
        }

        // Each service starts as soon as everything it depends on is healthy.
        foreach (var (service, supervisor) in graph.StartOrder.Zip(_services))
        {
            var dependencies = service.Dependencies.Select(d => _ready[d]).ToList();
            _ = StartWhenReadyAsync(supervisor, dependencies, shutdown);
        }
    }

    private Dictionary<string, string> RequireBuiltAssemblies()
    {
        var assemblies = graph.StartOrder.ToDictionary(s => s.Name, layout.AssemblyPath, StringComparer.Ordinal);
        var missing = assemblies.Where(a => !File.Exists(a.Value)).Select(a => $"  {a.Key}: {a.Value}").ToList();
        return missing.Count == 0
            ? assemblies
            : throw new AppHostException(
                $"Not built ({layout.Configuration}):\n{string.Join('\n', missing)}\n" +
                $"Run ./build/run.sh, or `dotnet build Lifeline.slnx -c {layout.Configuration}` first.");
    }

    /// <summary>The external server given by --postgres / LIFELINE_POSTGRES, or the local cluster.</summary>
    private PostgresConnections DeclarePostgres(SecretStore secrets)
    {
        if (options.ExternalPostgres is { } admin)
        {
            var external = new PostgresConnections(admin);
            AddExternal(InfrastructureNames.Postgres, external.DisplayUrl, external.CheckHealthAsync);
            return external;
        }

        if (LocalPostgres.IsInitialized(layout.PostgresDirectory) && secrets.PostgresSuperuserPassword is null)
        {
            throw new AppHostException(
                $"The cluster in {layout.PostgresDirectory} exists but {layout.SecretsFile} has no superuser password for it. " +
                $"Restore secrets.json, or delete {layout.PostgresDirectory} to initialise a new (empty) cluster.");
        }

        var local = new LocalPostgres(layout.PostgresDirectory, options.PostgresPort, secrets.GetOrCreatePostgresSuperuserPassword());
        AddSupervised(local, _infrastructure, failFast: true);
        return new PostgresConnections(local.AdminConnectionString);
    }

    /// <summary>The external Redis given by --redis / LIFELINE_REDIS, or a local redis-server; returns the services' connection string.</summary>
    private string DeclareRedis()
    {
        if (options.ExternalRedis is { } external)
        {
            var (host, port) = RedisPing.FirstEndpoint(external);
            AddExternal(InfrastructureNames.Redis, $"redis://{host}:{port}", ct => RedisPing.PingAsync(host, port, ct));
            return external;
        }

        var local = new LocalRedis(layout.RedisDirectory, options.RedisPort, _pidFiles);
        AddSupervised(local, _infrastructure, failFast: true);
        return local.ConnectionString;
    }

    /// <summary>Checks external servers answer, starts the local ones and waits until they are healthy.</summary>
    private async Task StartInfrastructureAsync(CancellationToken shutdown)
    {
        foreach (var (name, check) in _externalChecks)
        {
            var health = await check(shutdown).ConfigureAwait(false);
            if (health.Status == HealthStatus.Unhealthy)
            {
                throw new AppHostException($"The external {name} does not answer: {health.Description}");
            }

            _table.Update(name, r => r with { State = ResourceState.Healthy });
        }

        foreach (var supervisor in _infrastructure)
        {
            await supervisor.Resource.PrepareAsync(console.Info, shutdown).ConfigureAwait(false);
            supervisor.Start();
        }

        foreach (var supervisor in _infrastructure)
        {
            await supervisor.Ready.WaitAsync(shutdown).ConfigureAwait(false);
        }
    }

    private async Task StartWhenReadyAsync(ResourceSupervisor supervisor, List<Task> dependencies, CancellationToken shutdown)
    {
        try
        {
            await Task.WhenAll(dependencies).WaitAsync(shutdown).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or AppHostException)
        {
            return; // shutting down, or a dependency failed (reported by the caller)
        }

        await supervisor.Resource.PrepareAsync(console.Info, shutdown).ConfigureAwait(false);
        supervisor.Start();
    }

    /// <summary>Waits for every resource's first healthy probe, then probes everything once more.</summary>
    private async Task<int> VerifyHealthyAsync(CancellationToken shutdown)
    {
        try
        {
            await Task.WhenAll(_ready.Values).WaitAsync(options.StartupTimeout, shutdown).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            var waiting = _infrastructure.Concat(_services)
                .Where(s => !s.Ready.IsCompletedSuccessfully)
                .Select(s => $"{s.Name} ({_table[s.Name].State.ToString().ToLowerInvariant()}: {s.LastHealth.Description})");
            throw new AppHostException(
                $"Not healthy within {options.StartupTimeout.TotalSeconds:0} s: {string.Join(", ", waiting)}.");
        }

        var failures = new List<string>();
        foreach (var supervisor in _infrastructure.Concat(_services))
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            var health = await supervisor.Resource.CheckHealthAsync(timeout.Token).ConfigureAwait(false);
            if (health.Status != HealthStatus.Healthy)
            {
                failures.Add($"{supervisor.Name}: {health.Status} {health.Description}");
            }
        }

        foreach (var check in _externalChecks)
        {
            var health = await check.Value(shutdown).ConfigureAwait(false);
            if (health.Status != HealthStatus.Healthy)
            {
                failures.Add($"{check.Key}: {health.Status} {health.Description}");
            }
        }

        _table.Print(force: false);
        if (failures.Count > 0)
        {
            throw new AppHostException($"Health verification failed: {string.Join("; ", failures)}");
        }

        console.Info($"verified: all {_ready.Count} resources are healthy; stopping (--exit-when-healthy)");
        return 0;
    }

    private async Task StopAsync()
    {
        // Services in reverse start order (dependents first), then Redis, then PostgreSQL.
        foreach (var supervisor in Enumerable.Reverse(_services).Concat(Enumerable.Reverse(_infrastructure)))
        {
            try
            {
                await supervisor.StopAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is AppHostException or InvalidOperationException or IOException)
            {
                console.Error($"stopping {supervisor.Name}: {ex.Message}");
            }
        }

        _table.Print(force: false);
    }

    private void AddSupervised(IManagedResource resource, List<ResourceSupervisor> into, bool failFast)
    {
        var supervisor = new ResourceSupervisor(resource, _table, console, _pidFiles, failFast);
        into.Add(supervisor);
        _ready[resource.Name] = supervisor.Ready;
    }

    private void AddExternal(string name, string url, Func<CancellationToken, Task<HealthResult>> check)
    {
        _table.Add(name, url + " (external)");
        _externalChecks[name] = check;
        _ready[name] = Task.CompletedTask;
    }

    private async Task RequirePortsFreeAsync(CancellationToken shutdown)
    {
        foreach (var supervisor in _infrastructure.Concat(_services))
        {
            foreach (var port in supervisor.Resource.Ports)
            {
                if (await IsListeningAsync(port, shutdown).ConfigureAwait(false))
                {
                    var option = supervisor.Name switch
                    {
                        "postgres" => " (choose another with --postgres-port)",
                        "redis" => " (choose another with --redis-port)",
                        "gateway" => " (choose others with --gateway-port and --gateway-rest-port)",
                        _ when options.ServicePortOffset == 0 => " (run beside another suite with --service-port-offset)",
                        _ => "",
                    };
                    throw new AppHostException(
                        $"Port {port} for {supervisor.Name} is already in use by another process{option}; `ss -ltnp 'sport = :{port}'` shows which.");
                }
            }
        }
    }

    private static async Task<bool> IsListeningAsync(int port, CancellationToken cancellationToken)
    {
        using var client = new TcpClient();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            await client.ConnectAsync("127.0.0.1", port, timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }
}
