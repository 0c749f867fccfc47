using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Lifeline.Benchmarks;

/// <summary>The command line: which services to drive, how long, where the results go.</summary>
internal sealed record BenchmarkOptions(
    string Only, Uri? QueueUrl, int? QueuePid, Uri? RegistryUrl, int? RegistryPid, int? RegistryWorkers, bool Quick, double Scale, string JsonPath)
{
    public const string Usage = """
        Lifeline benchmark: throughput and latency of the queue, registry, checkpoint and backup services through gRPC,
        how fast the recovery service puts the work of dead workers right, and the queue driven through the .NET worker library.

        dotnet run -c Release --project tests/Lifeline.Benchmarks -- [options]

          (default)             start PostgreSQL (durable settings: fsync, synchronous_commit, full_page_writes on),
                                Redis and each service under test (its Release build, as a separate process) locally
          --only WHAT           queue, registry, checkpoint, recovery, backup, worker-library or all (default all); recovery always
                                starts its own registry, queue and recovery services (it needs their settings: 1 s heartbeats, 1 s scans);
                                worker-library starts a registry and a queue, and the gateway and .NET LifelineWorkers in this process
          --queue-url URL       drive an already-running queue service instead, e.g. http://127.0.0.1:5101
          --queue-pid PID       with --queue-url: read that process's memory (VmRSS, VmHWM) after each phase
          --registry-url URL    drive an already-running registry service instead (no PostgreSQL write counts then)
          --registry-pid PID    with --registry-url: read that process's memory after each phase
          --registry-workers N  simulated workers of the registry scenarios (default 10000)
          --quick               short smoke run (small task counts, 5 s heartbeat windows, a 40 MB backup target; a few minutes)
          --scale FACTOR        multiply every queue task count (default 1; e.g. 5 on a machine with more and faster cores)
          --json PATH           where to write the results as JSON (default: benchmark-results.json)
          --help                this text

        dotnet run -c Release --project tests/Lifeline.Benchmarks -- fuzz --help
                                the contract fuzz long run against a running suite (its own options)
        """;

    public bool RunQueue => Only is "queue" or "all";

    public bool RunRegistry => Only is "registry" or "all";

    /// <summary>The checkpoint section always runs its own services locally: the delta-versus-full comparison needs a second instance with other settings.</summary>
    public bool RunCheckpoint => Only is "checkpoint" or "all";

    /// <summary>The recovery section always runs its own registry, queue and recovery services locally, with the settings it measures.</summary>
    public bool RunRecovery => Only is "recovery" or "all";

    public bool RunBackup => Only is "backup" or "all";

    /// <summary>The worker-library section always runs its own registry and queue locally (and the gateway in this process).</summary>
    public bool RunWorkerLibrary => Only is "worker-library" or "all";

    public BenchmarkProfile Profile
    {
        get
        {
            var profile = Quick ? BenchmarkProfile.Quick(Scale) : BenchmarkProfile.Full(Scale);
            return RegistryWorkers is { } workers ? profile with { Registry = profile.Registry with { Workers = workers } } : profile;
        }
    }

    /// <summary>False with a null <paramref name="problem"/> when only help was asked for.</summary>
    public static bool TryParse(string[] args, [NotNullWhen(true)] out BenchmarkOptions? options, out string? problem)
    {
        options = null;
        problem = null;
        var only = "all";
        Uri? queueUrl = null;
        int? queuePid = null;
        Uri? registryUrl = null;
        int? registryPid = null;
        int? registryWorkers = null;
        var quick = false;
        var scale = 1.0;
        var json = "benchmark-results.json";
        for (var i = 0; i < args.Length; i++)
        {
            string? Value() => i + 1 < args.Length ? args[++i] : null;
            switch (args[i])
            {
                case "--only":
                    only = Value() ?? "";
                    if (only is not ("queue" or "registry" or "checkpoint" or "recovery" or "backup" or "worker-library" or "all"))
                    {
                        problem = "--only needs queue, registry, checkpoint, recovery, backup, worker-library or all";
                        return false;
                    }
                    break;
                case "--queue-url" or "--registry-url":
                    var name = args[i];
                    if (!Uri.TryCreate(Value(), UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
                    {
                        problem = $"{name} needs an absolute http(s) URL, e.g. http://127.0.0.1:5101";
                        return false;
                    }

                    if (name == "--queue-url")
                    {
                        queueUrl = url;
                    }
                    else
                    {
                        registryUrl = url;
                    }
                    break;
                case "--queue-pid" or "--registry-pid":
                    var option = args[i];
                    if (!int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid <= 0)
                    {
                        problem = $"{option} needs a process id";
                        return false;
                    }

                    if (option == "--queue-pid")
                    {
                        queuePid = pid;
                    }
                    else
                    {
                        registryPid = pid;
                    }
                    break;
                case "--registry-workers":
                    if (!int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var workers) || workers is < 100 or > 1_000_000)
                    {
                        problem = "--registry-workers needs a count from 100 to 1000000";
                        return false;
                    }
                    registryWorkers = workers;
                    break;
                case "--quick":
                    quick = true;
                    break;
                case "--scale":
                    if (!double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out scale) || scale is <= 0 or > 1_000)
                    {
                        problem = "--scale needs a positive factor, e.g. 0.5 or 5";
                        return false;
                    }
                    break;
                case "--json":
                    json = Value() ?? "";
                    if (json.Length == 0)
                    {
                        problem = "--json needs a file path";
                        return false;
                    }
                    break;
                case "--help" or "-h":
                    return false;
                default:
                    problem = $"Unknown option '{args[i]}'.";
                    return false;
            }
        }

        if (queuePid is not null && queueUrl is null)
        {
            problem = "--queue-pid only goes with --queue-url (a locally started service is measured anyway).";
            return false;
        }

        if (registryPid is not null && registryUrl is null)
        {
            problem = "--registry-pid only goes with --registry-url (a locally started service is measured anyway).";
            return false;
        }

        options = new BenchmarkOptions(only, queueUrl, queuePid, registryUrl, registryPid, registryWorkers, quick, scale, Path.GetFullPath(json));
        return true;
    }
}
