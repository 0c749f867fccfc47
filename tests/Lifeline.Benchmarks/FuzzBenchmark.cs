using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Lifeline.EndToEnd.Tests.Fuzzing;

namespace Lifeline.Benchmarks;

/// <summary>
/// The contract fuzz test's generator as a long run against a suite that is already running (<c>./build/run.sh</c>):
/// by default every generated case, through the gateway named in the suite's credentials.json, with throughput and
/// latency per transport and the grouped failure report. The store, restart and valid-traffic checks are the end-to-end
/// test's (tests/Lifeline.EndToEnd.Tests/FuzzTests.cs), which owns its suite.
/// </summary>
internal static class FuzzBenchmark
{
    public const string Usage = """
        Lifeline contract fuzz (long run): malformed requests generated from the compiled contracts, sent through the
        gateway of a running suite to every RPC and REST route.

        dotnet run -c Release --project tests/Lifeline.Benchmarks -- fuzz [options]

          --credentials PATH    the suite's credentials.json (default .lifeline/credentials.json)
          --tenant NAME         tenant whose operator and worker keys are used (default: default)
          --cases N             how many cases (default: all of them)
          --seed N              which cases, and their random parts (default 20261201)
          --parallelism N       calls at a time (default 8)
          --report PATH         where to write the full report (default fuzz-report.txt)
          --max-groups N        failure groups printed (default 400)
        Exit code 0 when no case failed, 1 when some did, 2 on bad options.
        """;

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var credentials = ".lifeline/credentials.json";
        var tenant = "default";
        var cases = int.MaxValue;
        var seed = ContractFuzzer.DefaultSeed;
        var parallelism = 8;
        var reportPath = "fuzz-report.txt";
        var maxGroups = 400;
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : "";
            int Number() => int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : -1;
            switch (args[i])
            {
                case "--credentials":
                    credentials = Value();
                    break;
                case "--tenant":
                    tenant = Value();
                    break;
                case "--cases":
                    cases = Number();
                    break;
                case "--seed":
                    seed = Number();
                    break;
                case "--parallelism":
                    parallelism = Number();
                    break;
                case "--report":
                    reportPath = Value();
                    break;
                case "--max-groups":
                    maxGroups = Number();
                    break;
                case "--help" or "-h":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    Console.Error.WriteLine($"Unknown option '{args[i]}'.\n{Usage}");
                    return 2;
            }
        }

        if (cases < 0 || seed < 0 || parallelism < 0 || maxGroups < 0 || reportPath.Length == 0 || !File.Exists(credentials))
        {
            Console.Error.WriteLine($"Bad options (numbers must be positive; {credentials} must exist: start the suite with ./build/run.sh).\n{Usage}");
            return 2;
        }

        using var document = JsonDocument.Parse(await File.ReadAllTextAsync(credentials, cancellationToken));
        var root = document.RootElement;
        string? KeyOf(string role) => root.GetProperty("keys").EnumerateArray()
            .FirstOrDefault(k => k.GetProperty("tenant").GetString() == tenant && k.GetProperty("role").GetString() == role) is { ValueKind: JsonValueKind.Object } key
            ? key.GetProperty("key").GetString()
            : null;
        var operatorKey = KeyOf("operator");
        var workerKey = KeyOf("worker");
        if (operatorKey is null || workerKey is null)
        {
            Console.Error.WriteLine($"{credentials} has no operator and worker key of tenant '{tenant}'.");
            return 2;
        }

        var grpc = new Uri(root.GetProperty("gateway_grpc").GetString()!);
        var rest = new Uri(root.GetProperty("gateway_rest").GetString() ?? grpc.ToString());
        var fuzzer = ContractFuzzer.FromContracts();
        var selected = fuzzer.Select(cases, seed);
        var run = Guid.NewGuid().ToString("N")[..8];
        Console.WriteLine($"Lifeline contract fuzz: {selected.Count} of {fuzzer.AllCases.Count} cases (seed {seed}, run {run}) on " +
            $"{fuzzer.Catalog.Methods.Count} RPCs and {fuzzer.RestRoutes} REST routes via {grpc} and {rest}, {parallelism} at a time, tenant {tenant}");

        using var runner = new FuzzRunner(grpc, rest, operatorKey, workerKey, run, seed);
        var clock = Stopwatch.StartNew();
        var outcomes = await runner.RunAsync(selected, parallelism, cancellationToken);
        var elapsed = clock.Elapsed;
        var failures = outcomes.Where(o => o.Failure is not null).ToList();
        var groups = FuzzReport.Groups(failures, maxGroups, out var groupCount);

        var summary = $"""
            {outcomes.Count} cases in {elapsed.TotalSeconds:0.0} s: {outcomes.Count / elapsed.TotalSeconds:0.0} cases/s; {outcomes.Count(o => o.Accepted)} accepted; {failures.Count} failed in {groupCount} groups
            {Latencies(outcomes)}
            {FuzzReport.Tally(outcomes)}

            FAILURES BY CASE FAMILY (failure/status ×cases on RPCs):
            {FuzzReport.ByFamily(failures)}
            FAILURE GROUPS (RPC  transport  family  failure/status ×cases  [fields]  "commonest message"):
            {groups}
            """;
        Console.WriteLine(summary);
        await File.WriteAllTextAsync(reportPath,
            $"{summary}\nALL FAILING CASES:\n{FuzzReport.Cases(failures)}\nALL CASES, AS THEY STARTED:\n{FuzzReport.Cases(outcomes, byTime: true)}", cancellationToken);
        Console.WriteLine($"Full report: {Path.GetFullPath(reportPath)}");
        return failures.Count == 0 ? 0 : 1;
    }

    private static string Latencies(IReadOnlyList<FuzzOutcome> outcomes) => string.Join("; ", outcomes
        .GroupBy(o => o.Case.Transport)
        .OrderBy(g => g.Key)
        .Select(g =>
        {
            var sorted = g.Select(o => o.Elapsed.TotalMilliseconds).Order().ToArray();
            double At(double q) => sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
            return $"{g.Key.ToString().ToLowerInvariant()} p50 {At(0.5):0} ms, p95 {At(0.95):0} ms, p99 {At(0.99):0} ms, max {sorted[^1]:0} ms";
        }));
}
