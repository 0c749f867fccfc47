using Lifeline.Common.V1;
using Lifeline.Recovery.Consistency;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>
/// Queue and registry integrity for a validation step: runs every consistency check as one stored run (as
/// RunAllChecks does). A check fails the validation when it could not run, or when it found issues of
/// severity HIGH or CRITICAL; lower-severity issues are reported among the passed checks.
/// </summary>
public sealed class ConsistencyProbe(ConsistencyRunner runner, IEnumerable<IConsistencyCheck> checks) : IConsistencyProbe
{
    public async Task<IntegrityReport> CheckAsync(CancellationToken ct)
    {
        var (runId, results) = await runner.RunAsync([.. checks], "*", ct);
        var passed = new List<string>();
        var failed = new List<string>();
        foreach (var result in results)
        {
            var name = result.Check.Name;
            if (result.Error.Length > 0)
            {
                failed.Add($"consistency check {name} could not run: {result.Error}");
                continue;
            }
            var serious = result.Issues.Where(i => i.Severity is Severity.High or Severity.Critical).ToList();
            if (serious.Count > 0)
            {
                failed.Add($"consistency check {name} found {serious.Count} {serious[0].Severity} issue(s) (run {runId}): " +
                           string.Join(", ", serious.Take(5).Select(i => i.Subject)) + (serious.Count > 5 ? ", …" : ""));
            }
            else
            {
                passed.Add(result.Issues.Count == 0 ? $"consistency check {name} clean" : $"consistency check {name}: {result.Issues.Count} minor issue(s)");
            }
        }
        return new IntegrityReport(passed, failed);
    }
}
