using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Lifeline.Benchmarks;

/// <summary>The command line: which services to drive, how long, where the results go.</summary>
internal sealed record BenchmarkOptions(
    string Only, Uri? QueueUrl, int? QueuePid, Uri? RegistryUrl, int? RegistryPid, int? RegistryWorkers, bool Quick, double Scale, string JsonPath,
    long Pending = 0, IReadOnlyList<string>? Rows = null)
{
    /// <summary>The backlog of the pending pass of <c>--only queue-scale</c> unless <c>--pending</c> says otherwise.</summary>
    public const long DefaultPending = 1_000_000;

    public const string Usage = """
        Lifeline benchmark: throughput and latency of the queue, registry, checkpoint and backup services through gRPC,
        how fast the recovery service puts the work of dead workers right, and the queue driven through the .NET worker library.

        dotnet run -c Release --project tests/Lifeline.Benchmarks -- [options]

          (default)             start PostgreSQL (durable settings: fsync, synchronous_commit, full_page_writes on),
                                Redis and each service under test (its Release build, as a separate process) locally
          --only WHAT           queue, queue-scale, registry, checkpoint, recovery, backup, worker-library or all (default all).
                                queue: the queue's rows (a cold row on a brand-new database, then warm rows: processing by
                                long poll, dispatch stream and worker library; enqueue; enqueue → handler start latency), each
                                with tasks/s, CPU per task (client, service, PostgreSQL), its target and an exactly-once check.
                                queue-scale: the same, then every row again with --pending tasks (default 1,000,000) pending
                                in the table, side by side. worker-library: only the worker-library rows (own registry, queue
                                and gateway). recovery always starts its own registry, queue and recovery services
          --pending N           run the queue's rows a second time with N pending tasks (of another type) in the table
                                (inserted with SQL into the benchmark's own database); 0 = no second pass
          --rows LIST           only the queue rows whose id starts with one of these (comma-separated), e.g.
                                lease-start-w32,dispatch,enqueue; "cold" selects the cold row
          --queue-url URL       drive an already-running queue service instead, e.g. http://127.0.0.1:5101 (no cold row,
                                no statistics, no --pending; a row's left-over backlog is worked off, not cut)
          --queue-pid PID       with --queue-url: read that process's memory and CPU
          --registry-url URL    drive an already-running registry service instead (no PostgreSQL write counts then)
          --registry-pid PID    with --registry-url: read that process's memory after each phase
          --registry-workers N  simulated workers of the registry scenarios (default 10000)
          --quick               short smoke run (queue rows: 1 s warm-up + 3 s window; 5 s heartbeat windows, a 40 MB backup
                                target; a few minutes)
          --scale FACTOR        multiply every queue backlog (default 1; raise it when a row's backlog runs out before its window ends)
          --json PATH           where to write the results as JSON (default: benchmark-results.json)
          --help                this text

        dotnet run -c Release --project tests/Lifeline.Benchmarks -- fuzz --help
                                the contract fuzz long run against a running suite (its own options)
        """;

    /// <summary>The queue section (its worker-library rows run on a registry, queue and gateway of their own).</summary>
    public bool RunQueue => Only is "queue" or "queue-scale" or "worker-library" or "all";

    public bool RunRegistry => Only is "registry" or "all";

    /// <summary>The checkpoint section always runs its own services locally: the delta-versus-full comparison needs a second instance with other settings.</summary>
    public bool RunCheckpoint => Only is "checkpoint" or "all";

    /// <summary>The recovery section always runs its own registry, queue and recovery services locally, with the settings it measures.</summary>
    public bool RunRecovery => Only is "recovery" or "all";

    public bool RunBackup => Only is "backup" or "all";

    public BenchmarkProfile Profile
    {
        get
        {
            var profile = Quick ? BenchmarkProfile.Quick(Scale, Pending, Rows) : BenchmarkProfile.Full(Scale, Pending, Rows);
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
        long? pending = null;
        string[]? rows = null;
        for (var i = 0; i < args.Length; i++)
        {
            string? Value() => i + 1 < args.Length ? args[++i] : null;
            switch (args[i])
            {
                case "--only":
                    only = Value() ?? "";
                    if (only is not ("queue" or "queue-scale" or "registry" or "checkpoint" or "recovery" or "backup" or "worker-library" or "all"))
                    {
                        problem = "--only needs queue, queue-scale, registry, checkpoint, recovery, backup, worker-library or all";
                        return false;
                    }
                    break;
                case "--pending":
                    if (!long.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var backlog) || backlog > 10_000_000)
                    {
                        problem = "--pending needs a count from 0 to 10000000";
                        return false;
                    }
                    pending = backlog;
                    break;
                case "--rows":
                    rows = (Value() ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    if (rows.Length == 0)
                    {
                        problem = "--rows needs row ids (or their beginnings), comma-separated, e.g. lease-start-w32,dispatch";
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

        if (only == "worker-library")
        {
            rows ??= ["library-", "start-latency-library"];
        }

        var backlogSize = pending ?? (only == "queue-scale" ? DefaultPending : 0);
        if (backlogSize > 0 && queueUrl is not null)
        {
            problem = "--pending (and queue-scale) insert the backlog into the benchmark's own database: not with --queue-url.";
            return false;
        }

        options = new BenchmarkOptions(
            only, queueUrl, queuePid, registryUrl, registryPid, registryWorkers, quick, scale, Path.GetFullPath(json), backlogSize, rows);
        return true;
    }
}
