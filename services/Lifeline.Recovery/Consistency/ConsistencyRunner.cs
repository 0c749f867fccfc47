using System.Diagnostics;
using System.Text.Json;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Recovery.Consistency;

/// <summary>A stored issue with the outcome of a fix (for the reply).</summary>
public sealed record FixedIssue(ConsistencyIssueEntity Issue, FixStatus? Status);

/// <summary>
/// Runs checks and stores each run (<c>check_runs</c>) with the issues found (<c>consistency_issues</c>);
/// applies fixes of a run's issues, each re-validated by its check, recording the outcome (not on a dry run).
/// A check that throws (a service unreachable) gets an error; the other checks still run.
/// </summary>
public sealed partial class ConsistencyRunner(IEnumerable<IConsistencyCheck> checks, IDbContextFactory<RecoveryDbContext> db,
    TimeProvider time, ILogger<ConsistencyRunner> logger)
{
    private readonly IReadOnlyList<IConsistencyCheck> _checks = checks.ToList();

    public IReadOnlyList<CheckDefinition> Definitions => _checks.Select(c => c.Definition).ToList();

    public IConsistencyCheck Find(string name) =>
        _checks.FirstOrDefault(c => c.Definition.Name == name) ?? throw new NotFoundException("check", name);

    /// <summary>Runs the given checks as one stored run.</summary>
    public async Task<(Guid RunId, IReadOnlyList<CheckResult> Results)> RunAsync(IReadOnlyList<IConsistencyCheck> selected, string scope, CancellationToken ct)
    {
        var runId = Guid.CreateVersion7();
        var started = time.GetUtcNow().UtcDateTime;
        await using (var context = await db.CreateDbContextAsync(ct))
        {
            context.CheckRuns.Add(new CheckRunEntity { Id = runId, Scope = scope, StartedAt = started, Summary = "[]" });
            await context.SaveChangesAsync(ct);
        }
        var results = new List<CheckResult>();
        var summary = new List<Dictionary<string, object?>>();
        foreach (var check in selected)
        {
            var clock = Stopwatch.StartNew();
            var result = new CheckResult { RunId = runId.ToString(), Check = check.Definition };
            var found = new List<ConsistencyIssueEntity>();
            try
            {
                foreach (var issue in await check.FindAsync(ct))
                {
                    found.Add(new ConsistencyIssueEntity
                    {
                        Id = Guid.CreateVersion7(),
                        RunId = runId,
                        CheckName = check.Definition.Name,
                        Severity = (int)check.Definition.Severity,
                        TenantId = issue.Tenant,
                        Subject = issue.Subject,
                        Description = issue.Description,
                        Fixable = issue.Fixable,
                        Details = JsonSerializer.Serialize(issue.Details),
                        CreatedAt = time.GetUtcNow().UtcDateTime,
                    });
                }
            }
            catch (Exception e) when (Unreachable(e, ct))
            {
                result.Error = e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message;
                LogCheckFailed(logger, check.Definition.Name, e);
            }
            if (found.Count > 0)
            {
                await using var context = await db.CreateDbContextAsync(ct);
                context.ConsistencyIssues.AddRange(found);
                await context.SaveChangesAsync(ct);
            }
            result.Duration = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(clock.Elapsed);
            result.Issues.AddRange(found.Select(ToProto));
            results.Add(result);
            summary.Add(new() { ["name"] = check.Definition.Name, ["duration_ms"] = clock.ElapsedMilliseconds, ["issues"] = found.Count,
                ["error"] = result.Error.Length > 0 ? result.Error : null });
        }
        await using (var context = await db.CreateDbContextAsync(ct))
        {
            await context.CheckRuns.Where(r => r.Id == runId).ExecuteUpdateAsync(s => s
                .SetProperty(r => r.Summary, JsonSerializer.Serialize(summary))
                .SetProperty(r => r.FinishedAt, time.GetUtcNow().UtcDateTime), ct);
        }
        return (runId, results);
    }

    // A dependency that cannot be reached or refuses: the check reports an error instead of failing the run.
    private static bool Unreachable(Exception e, CancellationToken ct) =>
        e is RpcException or HttpRequestException or InvalidOperationException && !ct.IsCancellationRequested;

    /// <summary>
    /// Fixes issues of a run: the named ones (all must belong to it), or every fixable one not fixed yet. Each
    /// is re-validated by its check first. A dry run changes nothing, in the system or in the stored issues.
    /// </summary>
    public async Task<IReadOnlyList<FixedIssue>> FixAsync(Guid runId, IReadOnlyList<Guid> issueIds, bool dryRun, CancellationToken ct)
    {
        List<ConsistencyIssueEntity> issues;
        await using (var context = await db.CreateDbContextAsync(ct))
        {
            if (!await context.CheckRuns.AnyAsync(r => r.Id == runId, ct))
            {
                throw new NotFoundException("check_run", runId.ToString());
            }
            issues = await context.ConsistencyIssues.AsNoTracking().Where(i => i.RunId == runId).OrderBy(i => i.Id).ToListAsync(ct);
        }
        List<ConsistencyIssueEntity> selected;
        if (issueIds.Count > 0)
        {
            var byId = issues.ToDictionary(i => i.Id);
            selected = issueIds.Distinct().Select(id => byId.GetValueOrDefault(id) ?? throw new NotFoundException("consistency_issue", id.ToString())).ToList();
        }
        else
        {
            selected = issues.Where(i => i.Fixable && !i.Fixed).ToList();
        }
        var outcomes = new List<FixedIssue>();
        foreach (var issue in selected)
        {
            if (!issue.Fixable)
            {
                outcomes.Add(new FixedIssue(WithResult(issue, false, "not fixable automatically: " + issue.Description), null));
                continue;
            }
            if (issue.Fixed)
            {
                outcomes.Add(new FixedIssue(issue, null));
                continue;
            }
            var details = JsonSerializer.Deserialize<Dictionary<string, string>>(issue.Details) ?? [];
            FixOutcome outcome;
            try
            {
                outcome = await Find(issue.CheckName).FixAsync(new IssueToFix(issue.Id, issue.TenantId, issue.Subject, details), dryRun, ct);
            }
            catch (Exception e) when (Unreachable(e, ct))
            {
                outcome = new FixOutcome(FixStatus.Failed, e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message);
            }
            var result = dryRun ? "dry run: " + outcome.Result : outcome.Result;
            var fixedNow = !dryRun && outcome.Status is FixStatus.Fixed or FixStatus.NoLongerPresent;
            var updated = WithResult(issue, fixedNow, result);
            if (!dryRun)
            {
                updated.FixedAt = time.GetUtcNow().UtcDateTime;
                await using var context = await db.CreateDbContextAsync(ct);
                await context.ConsistencyIssues.Where(i => i.Id == issue.Id).ExecuteUpdateAsync(s => s
                    .SetProperty(i => i.Fixed, fixedNow)
                    .SetProperty(i => i.FixResult, result)
                    .SetProperty(i => i.FixedAt, updated.FixedAt), ct);
            }
            LogFix(logger, issue.CheckName, issue.Subject, outcome.Status, result);
            outcomes.Add(new FixedIssue(updated, outcome.Status));
        }
        return outcomes;
    }

    private static ConsistencyIssueEntity WithResult(ConsistencyIssueEntity issue, bool isFixed, string result) => new()
    {
        Id = issue.Id,
        RunId = issue.RunId,
        CheckName = issue.CheckName,
        Severity = issue.Severity,
        TenantId = issue.TenantId,
        Subject = issue.Subject,
        Description = issue.Description,
        Fixable = issue.Fixable,
        Fixed = isFixed,
        FixResult = result,
        Details = issue.Details,
        CreatedAt = issue.CreatedAt,
        FixedAt = issue.FixedAt,
    };

    public static ConsistencyIssue ToProto(ConsistencyIssueEntity e)
    {
        var issue = new ConsistencyIssue
        {
            Id = e.Id.ToString(),
            Check = e.CheckName,
            Severity = (Severity)e.Severity,
            TenantId = e.TenantId,
            Subject = e.Subject,
            Description = e.Description,
            Fixable = e.Fixable,
            Fixed = e.Fixed,
            FixResult = e.FixResult ?? "",
        };
        foreach (var (k, v) in JsonSerializer.Deserialize<Dictionary<string, string>>(e.Details) ?? [])
        {
            issue.Details[k] = v;
        }
        return issue;
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Consistency check {Check} could not run")]
    private static partial void LogCheckFailed(ILogger logger, string check, Exception exception);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Consistency fix of {Check} on {Subject}: {Status} — {Result}")]
    private static partial void LogFix(ILogger logger, string check, string subject, FixStatus status, string result);
}
