using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>Maps <c>dr_plans</c> and <c>dr_runs</c> rows to the contract; steps are JSON arrays (proto JSON).</summary>
public static class DrRecords
{
    /// <summary>A step runs at most this long unless it says otherwise.</summary>
    public static readonly TimeSpan DefaultStepTimeout = TimeSpan.FromMinutes(5);

    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);

    public static string ToJson<T>(IEnumerable<T> items) where T : IMessage
    {
        var json = new StringBuilder("[");
        foreach (var item in items)
        {
            if (json.Length > 1)
            {
                json.Append(',');
            }
            json.Append(Formatter.Format(item));
        }
        return json.Append(']').ToString();
    }

    public static List<T> FromJson<T>(string json) where T : IMessage<T>, new()
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.EnumerateArray().Select(e => JsonParser.Default.Parse<T>(e.GetRawText())).ToList();
    }

    public static DisasterRecoveryPlan ToProto(this DrPlanEntity e)
    {
        var plan = new DisasterRecoveryPlan
        {
            Id = e.Id.ToString(),
            Name = e.Name,
            Description = e.Description,
            CreatedAt = Timestamp.FromDateTime(Utc(e.CreatedAt)),
        };
        plan.Steps.AddRange(FromJson<DrStep>(e.Steps));
        return plan;
    }

    public static DisasterRecoveryRun ToProto(this DrRunEntity e)
    {
        var run = new DisasterRecoveryRun
        {
            Id = e.Id.ToString(),
            PlanId = e.PlanId.ToString(),
            Status = (DrRunStatus)e.Status,
            StartedAt = Timestamp.FromDateTime(Utc(e.StartedAt)),
            FinishedAt = e.FinishedAt is { } f ? Timestamp.FromDateTime(Utc(f)) : null,
            StartedBy = e.StartedBy,
        };
        run.Steps.AddRange(FromJson<DrStepResult>(e.Steps));
        return run;
    }

    public static TimeSpan Timeout(this DrStep step) => step.Timeout is { } t && t.ToTimeSpan() > TimeSpan.Zero ? t.ToTimeSpan() : DefaultStepTimeout;

    internal static DateTime Utc(DateTime value) => value.Kind == DateTimeKind.Utc ? value : DateTime.SpecifyKind(value, DateTimeKind.Utc);
}
