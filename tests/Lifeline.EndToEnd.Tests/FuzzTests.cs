using System.Diagnostics;
using System.Globalization;
using System.Text;
using Lifeline.EndToEnd.Tests.Fuzzing;
using Lifeline.EndToEnd.Tests.Suite;
using Xunit.Abstractions;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// Malformed input generated from the compiled contracts, sent through the gateway to every RPC and REST route of the
/// suite (see <see cref="ContractFuzzer"/>): a new RPC or field is attacked without anyone adding a case.
/// </summary>
/// <remarks>
/// Knobs (environment): LIFELINE_FUZZ_CASES (default <see cref="ContractFuzzer.DefaultCases"/>; the whole space is
/// several times larger), LIFELINE_FUZZ_SEED (default <see cref="ContractFuzzer.DefaultSeed"/>: same seed, same cases),
/// LIFELINE_FUZZ_PARALLELISM (default 8 calls at a time). The full report is written to TestResults/fuzz/.
/// </remarks>
[Collection(SuiteCollection.Name)]
public sealed class FuzzTests(SuiteFixture suite, ITestOutputHelper output)
{
    private const string FuzzTenant = "default";
    private const int MaxGroupsInMessage = 150;

    [Fact(Timeout = 20 * 60 * 1000)]
    public async Task Malformed_requests_to_every_rpc_and_route_are_refused_cleanly_and_write_nothing_restart_nothing_and_disturb_no_valid_work()
    {
        var seed = ContractFuzzer.IntFromEnvironment("LIFELINE_FUZZ_SEED", ContractFuzzer.DefaultSeed);
        var budget = ContractFuzzer.IntFromEnvironment("LIFELINE_FUZZ_CASES", ContractFuzzer.DefaultCases);
        var parallelism = ContractFuzzer.IntFromEnvironment("LIFELINE_FUZZ_PARALLELISM", 8);
        var run = Guid.NewGuid().ToString("N")[..8];
        var fuzzer = ContractFuzzer.FromContracts();
        var cases = fuzzer.Select(budget, seed);
        Assert.NotEmpty(fuzzer.Catalog.Methods);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(18));
        var cancellationToken = timeout.Token;

        // Registered before the store is counted: the worker that opens the fuzzer's dispatch streams.
        await using var opener = await StreamOpener.StartAsync(suite, Keys.DefaultWorker, run, cancellationToken);
        var store = new SuiteStore(suite);
        var processesBefore = await SuiteProcesses.ObserveAsync(suite);
        var countsBefore = await store.CountAsync(FuzzTenant, cancellationToken);

        using var runner = new FuzzRunner(suite.GatewayGrpc, suite.GatewayRest,
            suite.Credentials.Key(Keys.PlatformAdmin).Key, suite.Credentials.Key(Keys.DefaultWorker).Key, run, seed, opener.Opening);

        // Valid work on the other tenant, before (must work at all) and during the fuzzing.
        var valid = new ValidTraffic(suite, Keys.AcmeWorker, run, runner.Clock);
        await valid.StartAsync(cancellationToken);
        using var stopValid = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var validRun = valid.RunAsync(stopValid.Token, cancellationToken);

        var stopwatch = Stopwatch.StartNew();
        IReadOnlyList<FuzzOutcome> outcomes;
        try
        {
            outcomes = await runner.RunAsync(cases, parallelism, cancellationToken);
        }
        finally
        {
            await stopValid.CancelAsync();
            await validRun;
        }

        var fuzzTime = stopwatch.Elapsed;
        await valid.FinishAsync(cancellationToken);

        var problems = new List<string>();
        problems.AddRange((await SuiteProcesses.ObserveAsync(suite)).ChangesSince(processesBefore, suite).Select(c => "process: " + c));
        problems.AddRange(valid.Failures.Select(f => "valid traffic: " + f));
        if (valid.FailureCount > valid.Failures.Count)
        {
            problems.Add($"valid traffic: … {valid.FailureCount - valid.Failures.Count} more failures");
        }

        if (valid.Completed == 0)
        {
            problems.Add("valid traffic: no task completed while fuzzing");
        }

        // The store: a row carrying a case's marker must come from an accepted case, and entity tables grow only by those.
        var byId = outcomes.ToDictionary(o => o.Case.Id);
        var marked = await store.MarkedRowsAsync(run, cancellationToken);
        var wrote = marked
            .Where(m => byId.TryGetValue(m.CaseId, out var o) && !o.Accepted)
            .GroupBy(m => m.CaseId)
            .Select(g => byId[g.Key] with
            {
                Failure = "WROTE_WHEN_REFUSED",
                Message = $"{string.Join(", ", g.Select(m => $"{m.Rows} row(s) in {m.Table}"))}; the call was answered {byId[g.Key].Status}",
            })
            .ToList();
        var countsAfter = await store.CountAsync(FuzzTenant, cancellationToken);
        foreach (var (table, before) in countsBefore)
        {
            var grown = countsAfter[table] - before;
            var accepted = marked.Where(m => m.Table == table && byId.TryGetValue(m.CaseId, out var o) && o.Accepted).Sum(m => m.Rows);
            if (grown > accepted)
            {
                problems.Add($"store: {table} of tenant '{FuzzTenant}' grew by {grown} rows, but accepted cases account for {accepted}");
            }
        }

        var failures = outcomes.Where(o => o.Failure is not null && wrote.All(w => w.Case.Id != o.Case.Id)).Concat(wrote).ToList();
        var covered = cases.Select(c => c.Rpc.FullName).Distinct().Count();
        var summary = string.Create(CultureInfo.InvariantCulture,
            $"Contract fuzz: {outcomes.Count} of {fuzzer.AllCases.Count} cases (LIFELINE_FUZZ_CASES={budget}, LIFELINE_FUZZ_SEED={seed}, run {run}) " +
            $"on {covered} of {fuzzer.Catalog.Methods.Count} RPCs and {fuzzer.RestRoutes} REST routes in {fuzzTime.TotalSeconds:0} s; " +
            $"{outcomes.Count(o => o.Accepted)} accepted, {failures.Count} failed in ");
        var groups = FuzzReport.Groups(failures, MaxGroupsInMessage, out var groupCount);
        summary += string.Create(CultureInfo.InvariantCulture,
            $"{groupCount} groups; valid traffic on tenant acme: {valid.Completed} tasks completed, {valid.FailureCount} failures.\n{FuzzReport.Tally(outcomes)}\n");

        var message = new StringBuilder(summary);
        if (problems.Count > 0)
        {
            message.Append("\nPROBLEMS:\n").AppendJoin('\n', problems.Select(p => "  " + p)).Append('\n');
        }

        if (failures.Count > 0)
        {
            message.Append("\nFAILURES BY CASE FAMILY (failure/status ×cases on RPCs):\n").Append(FuzzReport.ByFamily(failures));
            message.Append("\nFAILURE GROUPS (RPC  transport  family  failure/status ×cases  [fields]  \"commonest message\"):\n").Append(groups);
        }

        var reportFile = WriteReport(
            $"{message}\nALL FAILING CASES:\n{FuzzReport.Cases(failures)}\nSERVICE ERRORS LOGGED DURING THE RUN:\n{ServiceErrors()}\n" +
            $"ALL CASES, AS THEY STARTED:\n{FuzzReport.Cases(outcomes, byTime: true)}", seed, run);
        message.Append(CultureInfo.InvariantCulture,
            $"\nFull report: {reportFile}\nReproduce: LIFELINE_FUZZ_SEED={seed} LIFELINE_FUZZ_CASES={budget} dotnet test tests/Lifeline.EndToEnd.Tests -c Release --no-build --filter FullyQualifiedName~Lifeline.EndToEnd.Tests.FuzzTests\n");
        output.WriteLine(message.ToString());
        Assert.True(problems.Count == 0 && failures.Count == 0, message.ToString());
    }

    /// <summary>What the services logged as errors (the apphost log's <c>fail:</c> entries, each with its first lines).</summary>
    private string ServiceErrors()
    {
        try
        {
            using var stream = new FileStream(suite.ApphostLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            var lines = reader.ReadToEnd().Split('\n');
            var errors = new StringBuilder();
            for (var i = 0; i < lines.Length && errors.Length < 64 * 1024; i++)
            {
                if (lines[i].Contains("fail: ", StringComparison.Ordinal) || lines[i].Contains("crit: ", StringComparison.Ordinal))
                {
                    foreach (var line in lines.Skip(i).Take(8))
                    {
                        errors.Append("  ").AppendLine(line.TrimEnd());
                    }
                }
            }
            return errors.Length == 0 ? "  (none)" : errors.ToString();
        }
        catch (IOException ex)
        {
            return "  (apphost log unreadable: " + ex.Message + ")";
        }
    }

    private string WriteReport(string text, int seed, string run)
    {
        var directory = Path.Combine(suite.RepositoryRoot, "TestResults", "fuzz");
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"fuzz-{seed}-{run}.txt"));
        File.WriteAllText(path, text);
        return path;
    }
}
