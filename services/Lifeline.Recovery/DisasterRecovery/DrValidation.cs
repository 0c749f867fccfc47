using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.Plans;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>Validates DisasterRecoveryService requests, listing every violation with its field path (<c>steps[2].type</c> …).</summary>
public static class DrValidation
{
    public const int MaxSteps = 50;

    /// <summary>Services a validation step may name (their grpc.health.v1 is checked).</summary>
    public static readonly string[] Services = ["queue", "registry", "checkpoint", "backup"];

    /// <summary>Databases a backup or restore step may name.</summary>
    public static readonly string[] Databases = ["queuedb", "registrydb", "checkpointdb", "recoverydb", "backupdb"];

    private static readonly TimeSpan MaxTimeout = TimeSpan.FromHours(24);

    public static CreateDisasterRecoveryPlanRequest Create(CreateDisasterRecoveryPlanRequest request)
    {
        var v = new Violations();
        var name = request.Name.Trim();
        v.AddIf(name.Length == 0, "name", "is required");
        v.AddIf(name.Length > 200, "name", "must be at most 200 characters");
        v.AddIf(request.Description.Length > RecoveryPlanValidation.MaxTextLength, "description", $"must be at most {RecoveryPlanValidation.MaxTextLength} characters");
        v.AddIf(request.Steps.Count == 0, "steps", $"must have 1 to {MaxSteps} steps; got none");
        v.AddIf(request.Steps.Count > MaxSteps, "steps", $"must have 1 to {MaxSteps} steps; got {request.Steps.Count}");
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Steps.Count; i++)
        {
            var step = request.Steps[i];
            var at = $"steps[{i}]";
            var stepName = step.Name.Trim();
            v.AddIf(stepName.Length == 0, $"{at}.name", "is required");
            v.AddIf(stepName.Length > 200, $"{at}.name", "must be at most 200 characters");
            v.AddIf(stepName.Length > 0 && !names.Add(stepName), $"{at}.name", $"'{Violations.Truncate(stepName, 64)}' is used by an earlier step; step names are unique within a plan");
            if (step.Type == DrStepType.Unspecified)
            {
                v.Add($"{at}.type", "is required (BACKUP, RESTORE, STATE_RECOVERY, TASK_RECOVERY, VALIDATION or NOTIFICATION)");
            }
            else
            {
                v.DefinedEnum($"{at}.type", step.Type);
            }
            for (var j = 0; j < step.Targets.Count; j++)
            {
                var target = step.Targets[j];
                var field = $"{at}.targets[{j}]";
                if (target.Length is 0 or > 200)
                {
                    v.Add(field, "must be 1 to 200 characters");
                    continue;
                }
                var known = step.Type switch
                {
                    DrStepType.Validation => Services,
                    DrStepType.Backup or DrStepType.Restore => Databases,
                    _ => null,
                };
                v.AddIf(known is not null && !known.Contains(target, StringComparer.Ordinal), field,
                    $"'{Violations.Truncate(target, 64)}' is not one of {string.Join(", ", known ?? [])}");
                v.AddIf(step.Type is DrStepType.StateRecovery or DrStepType.TaskRecovery, field, "this step type takes no targets");
            }
            if (step.Timeout is { } timeout)
            {
                var t = timeout.ToTimeSpan();
                v.AddIf(t <= TimeSpan.Zero || t > MaxTimeout, $"{at}.timeout", "must be more than 0 s and at most 24 h");
            }
        }
        v.ThrowIfAny();
        var normalized = request.Clone();
        normalized.Name = name;
        foreach (var step in normalized.Steps)
        {
            step.Name = step.Name.Trim();
        }
        return normalized;
    }

    public static Guid Id(string field, string value)
    {
        var v = new Violations();
        var id = v.Uuid(field, value);
        v.ThrowIfAny();
        return id;
    }

    public static (int PageSize, KeysetPageToken? After) Page(int pageSize, string pageToken)
    {
        var v = new Violations();
        var size = v.PageSize("page_size", pageSize, 100, 1000);
        var after = RecoveryPlanValidation.PageToken(v, pageToken);
        v.ThrowIfAny();
        return (size, after);
    }

    public static (Guid PlanId, string StartedBy) Run(RunDisasterRecoveryPlanRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("plan_id", request.PlanId);
        v.AddIf(request.StartedBy.Length > 200, "started_by", "must be at most 200 characters");
        v.ThrowIfAny();
        return (id, request.StartedBy.Trim());
    }

    public static (NotificationStatus Status, int PageSize, KeysetPageToken? After) ListNotifications(ListNotificationsRequest request)
    {
        var v = new Violations();
        v.DefinedEnum("status", request.Status);
        var size = v.PageSize("page_size", request.PageSize, 100, 1000);
        var after = RecoveryPlanValidation.PageToken(v, request.PageToken);
        v.ThrowIfAny();
        return (request.Status, size, after);
    }
}
