using System.Text.RegularExpressions;
using Lifeline.Backup.Retention;
using Lifeline.Backup.Scheduling;
using Lifeline.Backup.V1;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Backup.Grpc;

/// <summary>Contract requests → validated values; every violation of a request is reported together.</summary>
internal static partial class BackupValidation
{
    [GeneratedRegex("^[A-Za-z0-9_.-]{1,63}$")]
    private static partial Regex TargetPattern();

    public static string Target(Violations v, string field, string? value, bool required = true)
    {
        if (string.IsNullOrEmpty(value))
        {
            v.AddIf(required, field, "is required: the name of a configured backup target");
            return "";
        }
        v.AddIf(!TargetPattern().IsMatch(value), field, "must be 1 to 63 characters of letters, digits, '_', '.' and '-'");
        return value;
    }

    public static string Type(Violations v, string field, BackupType type, bool required = true)
    {
        if (type == BackupType.Unspecified)
        {
            v.AddIf(required, field, "is required: BACKUP_TYPE_FULL, BACKUP_TYPE_INCREMENTAL or BACKUP_TYPE_DIFFERENTIAL");
            return "";
        }
        if (!Enum.IsDefined(type))
        {
            v.DefinedEnum(field, type);
            return "";
        }
        return BackupMapper.TypeName(type);
    }

    public static Guid BackupId(string? value)
    {
        var v = new Violations();
        var id = v.Uuid("backup_id", value);
        v.ThrowIfAny();
        return id;
    }

    public static CronExpression Cron(Violations v, string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            v.Add("cron", "is required: a 5-field cron expression, e.g. '0 3 * * *'");
            return null!;
        }
        if (!CronExpression.TryParse(text, out var cron, out var error))
        {
            v.Add("cron", error);
            return null!;
        }
        if (cron!.NextAfter(DateTime.UtcNow) is null)
        {
            v.Add("cron", "never matches a date (e.g. 30 February)");
        }
        return cron;
    }

    /// <summary>At most one rule per backup type.</summary>
    public const int MaxRules = 3;

    public static IReadOnlyList<Retention.RetentionRule> Rules(Violations v, ApplyRetentionRequest request)
    {
        // Size before work: more rules than there are backup types are refused before any rule is checked.
        RepeatedFields.ThrowIfCountOutside("rules", request.Rules.Count, MaxRules, items: "rules (one per backup type)");
        v.AddIf(request.Rules.Count == 0, "rules", "at least one rule is required");
        var rules = new List<Retention.RetentionRule>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Rules.Count; i++)
        {
            var rule = request.Rules[i];
            var type = Type(v, $"rules[{i}].type", rule.Type);
            v.AddIf(type.Length > 0 && !seen.Add(type), $"rules[{i}].type", "only one rule per type");
            v.AddIf(rule.KeepCount < 0, $"rules[{i}].keep_count", $"must not be negative; got {rule.KeepCount}");
            v.AddIf(rule.KeepDays < 0, $"rules[{i}].keep_days", $"must not be negative; got {rule.KeepDays}");
            v.AddIf(rule.KeepCount == 0 && rule.KeepDays == 0, $"rules[{i}]", "set keep_count, keep_days or both (a rule keeping nothing is refused)");
            rules.Add(new Retention.RetentionRule(type, rule.KeepCount, rule.KeepDays));
        }
        return rules;
    }
}
