using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Common.V1;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Plans;

/// <summary>Maps <c>recovery_plans</c> rows to the contract; the actions column is a JSON array of PlanAction (proto JSON).</summary>
public static class PlanRecords
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);

    public static string ActionsJson(IEnumerable<PlanAction> actions)
    {
        var json = new StringBuilder("[");
        foreach (var action in actions)
        {
            if (json.Length > 1)
            {
                json.Append(',');
            }
            json.Append(Formatter.Format(action));
        }
        return json.Append(']').ToString();
    }

    public static List<PlanAction> ParseActions(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.EnumerateArray().Select(e => JsonParser.Default.Parse<PlanAction>(e.GetRawText())).ToList();
    }

    public static ErrorContext Error(this RecoveryPlanEntity e) => new()
    {
        Code = e.ErrorCode,
        Category = (ErrorCategory)e.Category,
        Severity = (Severity)e.Severity,
        Message = e.ErrorMessage,
        TaskId = e.TaskId?.ToString() ?? "",
        WorkflowId = e.WorkflowId,
        TenantId = e.TenantId,
    };

    public static RecoveryPlan ToProto(this RecoveryPlanEntity e)
    {
        var actions = ParseActions(e.Actions);
        var plan = new RecoveryPlan
        {
            Id = e.Id.ToString(),
            Error = e.Error(),
            Status = (PlanStatus)e.Status,
            RequiresApproval = e.RequiresApproval,
            ApprovedBy = e.ApprovedBy ?? "",
            ApprovedAt = e.ApprovedAt is { } at ? Timestamp.FromDateTime(Utc(at)) : null,
            Source = e.Source,
            EstimatedDuration = Duration.FromTimeSpan(actions.Aggregate(TimeSpan.Zero, (sum, a) => sum + (a.EstimatedDuration?.ToTimeSpan() ?? TimeSpan.Zero))),
            CreatedAt = Timestamp.FromDateTime(Utc(e.CreatedAt)),
            UpdatedAt = Timestamp.FromDateTime(Utc(e.UpdatedAt)),
        };
        plan.Actions.AddRange(actions);
        plan.NextSteps.AddRange(e.NextSteps);
        return plan;
    }

    internal static DateTime Utc(DateTime value) => value.Kind == DateTimeKind.Utc ? value : DateTime.SpecifyKind(value, DateTimeKind.Utc);
}
