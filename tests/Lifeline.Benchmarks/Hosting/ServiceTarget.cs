using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// One service under test: either one this run started as a child process on the local infrastructure
/// (stopped on dispose; its database is known, so PostgreSQL statistics can be read), or one already
/// running at a URL.
/// </summary>
internal sealed class ServiceTarget : IAsyncDisposable
{
    private readonly ServiceProcess? _service;

    private ServiceTarget(
        ServiceDefinition definition, Uri url, int? pid, string description, string? databaseConnectionString, ServiceProcess? service,
        LocalInfrastructure? infrastructure)
    {
        Definition = definition;
        Url = url;
        Pid = pid;
        Description = description;
        DatabaseConnectionString = databaseConnectionString;
        _service = service;
        CpuSources = new CpuSources(
            pid is { } p ? [p] : [], infrastructure is null ? null : infrastructure.RedisPids, infrastructure is null ? null : infrastructure.PostgresPostmaster);
    }

    public ServiceDefinition Definition { get; }

    public Uri Url { get; }

    /// <summary>The service's process id when known: its memory is read after each phase.</summary>
    public int? Pid { get; }

    public string Description { get; }

    /// <summary>The service's own database (superuser), when this run started it.</summary>
    public string? DatabaseConnectionString { get; }

    /// <summary>The service's console output, when this run started it.</summary>
    public ServiceOutput? Output => _service?.Output;

    /// <summary>The processes whose CPU a phase measures: the service's, and the local Redis and PostgreSQL (its process tree) when this run started them.</summary>
    public CpuSources CpuSources { get; }

    public ServiceMemory? ReadMemory() => Pid is { } pid ? ServiceMemory.Read(pid) : null;

    /// <summary>Throws, with the service's last output, when the service this run started has died.</summary>
    public void EnsureServiceRunning()
    {
        if (_service is { HasExited: true })
        {
            throw new InvalidOperationException($"The {Definition.Name} exited during the run. Its last output:\n{_service.Output.Tail()}");
        }
    }

    public static ServiceTarget Existing(ServiceDefinition definition, Uri url, int? pid) =>
        new(definition, url, pid, $"existing {definition.Name} at {url}", databaseConnectionString: null, service: null, infrastructure: null);

    /// <summary>The service as a child process, on a new database of the local cluster and the local Redis.</summary>
    public static async Task<ServiceTarget> StartLocalAsync(ServiceDefinition definition, LocalInfrastructure infrastructure, CancellationToken ct)
    {
        var database = await infrastructure.CreateDatabaseAsync(definition.DatabaseNamePrefix, ct);
        var service = await ServiceProcess.StartAsync(definition, database, infrastructure.RedisConnectionString, ct);
        var description =
            $"local: {definition.AssemblyPath} (pid {service.Pid}) at {service.Url}, {definition.SettingsDescription}; {infrastructure.Description}";
        return new ServiceTarget(definition, service.Url, service.Pid, description, database, service, infrastructure);
    }

    public async ValueTask DisposeAsync()
    {
        if (_service is not null)
        {
            await _service.DisposeAsync();
        }
    }
}
