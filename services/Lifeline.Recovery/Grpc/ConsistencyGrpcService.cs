using Grpc.Core;
using Lifeline.Recovery.Consistency;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Recovery.Grpc;

/// <summary>The ConsistencyService contract: validates, delegates to <see cref="ConsistencyRunner"/>, maps the result.</summary>
public sealed class ConsistencyGrpcService(ConsistencyRunner runner) : ConsistencyService.ConsistencyServiceBase
{
    public const int MaxIssueIds = 10_000;

    public override Task<ListChecksResponse> ListChecks(ListChecksRequest request, ServerCallContext context)
    {
        var response = new ListChecksResponse();
        response.Checks.AddRange(runner.Definitions);
        return Task.FromResult(response);
    }

    public override async Task<RunAllChecksResponse> RunAllChecks(RunAllChecksRequest request, ServerCallContext context)
    {
        var (runId, results) = await runner.RunAsync(runner.Definitions.Select(d => runner.Find(d.Name)).ToList(), "*", context.CancellationToken);
        var response = new RunAllChecksResponse { RunId = runId.ToString() };
        response.Results.AddRange(results);
        foreach (var issue in results.SelectMany(r => r.Issues))
        {
            var severity = Common.V1.CommonReflection.Descriptor.EnumTypes.First(e => e.Name == "Severity").FindValueByNumber((int)issue.Severity).Name;
            response.IssuesBySeverity[severity] = response.IssuesBySeverity.GetValueOrDefault(severity) + 1;
            response.TotalIssues++;
        }
        return response;
    }

    public override async Task<RunCheckResponse> RunCheck(RunCheckRequest request, ServerCallContext context)
    {
        var v = new Violations();
        v.AddIf(string.IsNullOrEmpty(request.Name), "name", "is required: one of " + string.Join(", ", runner.Definitions.Select(d => d.Name)));
        v.Text("name", request.Name, 128);
        v.ThrowIfAny();
        var check = runner.Find(request.Name);
        var (_, results) = await runner.RunAsync([check], check.Definition.Name, context.CancellationToken);
        return new RunCheckResponse { Result = results[0] };
    }

    public override async Task<FixIssuesResponse> FixIssues(FixIssuesRequest request, ServerCallContext context)
    {
        // Size before work: more ids than a fix takes are refused before any id is parsed.
        RepeatedFields.ThrowIfCountOutside("issue_ids", request.IssueIds.Count, MaxIssueIds, items: "ids");
        var v = new Violations();
        var runId = v.Uuid("run_id", request.RunId);
        var ids = new List<Guid>(request.IssueIds.Count);
        RepeatedFields.CheckItems(v, "issue_ids", request.IssueIds.Count, (v, i) => ids.Add(v.Uuid($"issue_ids[{i}]", request.IssueIds[i])));
        v.ThrowIfAny();
        var outcomes = await runner.FixAsync(runId, ids, request.DryRun, context.CancellationToken);
        var response = new FixIssuesResponse
        {
            Fixed = outcomes.Count(o => o.Status == FixStatus.Fixed),
            Failed = outcomes.Count(o => o.Status == FixStatus.Failed),
        };
        response.Issues.AddRange(outcomes.Select(o => ConsistencyRunner.ToProto(o.Issue)));
        return response;
    }
}
