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

    public const int MaxTargets = 32;

    public static CreateDisasterRecoveryPlanRequest Create(CreateDisasterRecoveryPlanRequest request)
    {
        // Size before work: the steps, and every step's targets, are counted before any is checked.
        RepeatedFields.ThrowIfCountOutside("steps", request.Steps.Count, MaxSteps, items: "steps");
        for (var i = 0; i < request.Steps.Count; i++)
        {
            RepeatedFields.ThrowIfCountOutside($"steps[{i}].targets", request.Steps[i].Targets.Count, MaxTargets, items: "targets");
        }
        var v = new Violations();
        var name = request.Name.Trim();
        v.AddIf(name.Length == 0, "name", "is required");
        v.Text("name", name, 200);
        v.Text("description", request.Description, RecoveryPlanValidation.MaxTextLength);
        v.AddIf(request.Steps.Count == 0, "steps", $"must have 1 to {MaxSteps} steps; got none");
        var names = new HashSet<string>(StringComparer.Ordinal);
        RepeatedFields.CheckItems(v, "steps", request.Steps.Count, (v, i) =>
        {
            var step = request.Steps[i];
            var at = $"steps[{i}]";
            var stepName = step.Name.Trim();
            v.AddIf(stepName.Length == 0, $"{at}.name", "is required");
            v.Text($"{at}.name", stepName, 200);
            v.AddIf(stepName.Length > 0 && !names.Add(stepName), $"{at}.name", $"'{Violations.Truncate(stepName, 64)}' is used by an earlier step; step names are unique within a plan");
            if (step.Type == DrStepType.Unspecified)
            {
                v.Add($"{at}.type", "is required (BACKUP, RESTORE, STATE_RECOVERY, TASK_RECOVERY, VALIDATION or NOTIFICATION)");
            }
            else
            {
                v.DefinedEnum($"{at}.type", step.Type);
            }
            RepeatedFields.CheckItems(v, $"{at}.targets", step.Targets.Count, (v, j) =>
            {
                var target = step.Targets[j];
                var field = $"{at}.targets[{j}]";
                if (target.Length is 0 or > 200 || target.Contains('\0', StringComparison.Ordinal))
                {
                    v.Add(field, "must be 1 to 200 characters without NUL");
                    return;
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
            });
            v.Duration($"{at}.timeout", step.Timeout, TimeSpan.FromTicks(1), MaxTimeout);
        });
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
        var after = RecoveryPlanValidation.PageToken(v, KeysetPageToken.DisasterRecoveryPlans, pageToken);
        v.ThrowIfAny();
        return (size, after);
    }

    public static (Guid PlanId, string StartedBy) Run(RunDisasterRecoveryPlanRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("plan_id", request.PlanId);
        v.Text("started_by", request.StartedBy, 200);
        v.ThrowIfAny();
        return (id, request.StartedBy.Trim());
    }

    public static (NotificationStatus Status, int PageSize, KeysetPageToken? After) ListNotifications(ListNotificationsRequest request)
    {
        var v = new Violations();
        v.DefinedEnum("status", request.Status);
        var size = v.PageSize("page_size", request.PageSize, 100, 1000);
        var after = RecoveryPlanValidation.PageToken(v, KeysetPageToken.Notifications, request.PageToken);
        v.ThrowIfAny();
        return (request.Status, size, after);
    }
}
