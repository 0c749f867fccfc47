using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Lifeline.Benchmarks;

/// <summary>The command line: which queue service to drive, how long, where the results go.</summary>
internal sealed record BenchmarkOptions(Uri? QueueUrl, int? QueuePid, bool Quick, double Scale, string JsonPath)
{
    public const string Usage = """
        Lifeline queue benchmark: throughput and latency of the queue service through gRPC.

        dotnet run -c Release --project tests/Lifeline.Benchmarks -- [options]

          (default)          start PostgreSQL (durable settings: fsync, synchronous_commit, full_page_writes on),
                             Redis and the queue service (its Release build, as a separate process) locally
          --queue-url URL    drive an already-running queue service instead, e.g. http://127.0.0.1:5101
          --queue-pid PID    with --queue-url: read that process's memory (VmRSS, VmHWM) after each phase
          --quick            short smoke run (small counts, about a minute)
          --scale FACTOR     multiply every task count (default 1; e.g. 5 on a machine with more and faster cores)
          --json PATH        where to write the results as JSON (default: benchmark-results.json)
          --help             this text
        """;

    public BenchmarkProfile Profile => Quick ? BenchmarkProfile.Quick(Scale) : BenchmarkProfile.Full(Scale);

    /// <summary>False with a null <paramref name="problem"/> when only help was asked for.</summary>
    public static bool TryParse(string[] args, [NotNullWhen(true)] out BenchmarkOptions? options, out string? problem)
    {
        options = null;
        problem = null;
        Uri? url = null;
        int? pid = null;
        var quick = false;
        var scale = 1.0;
        var json = "benchmark-results.json";
        for (var i = 0; i < args.Length; i++)
        {
            string? Value() => i + 1 < args.Length ? args[++i] : null;
            switch (args[i])
            {
                case "--queue-url":
                    if (!Uri.TryCreate(Value(), UriKind.Absolute, out url) || url.Scheme is not ("http" or "https"))
                    {
                        problem = "--queue-url needs an absolute http(s) URL, e.g. http://127.0.0.1:5101";
                        return false;
                    }
                    break;
                case "--queue-pid":
                    if (!int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) || parsed <= 0)
                    {
                        problem = "--queue-pid needs a process id";
                        return false;
                    }
                    pid = parsed;
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

        if (pid is not null && url is null)
        {
            problem = "--queue-pid only goes with --queue-url (a locally started service is measured anyway).";
            return false;
        }

        options = new BenchmarkOptions(url, pid, quick, scale, Path.GetFullPath(json));
        return true;
    }
}
