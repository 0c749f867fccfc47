using Lifeline.Recovery.Options;
using Microsoft.Extensions.Options;

namespace Lifeline.Recovery.Plans;

internal static class PlansRegistration
{
    /// <summary>Recovery plans: the builder's custom plans are checked at start, the executor acts through the suite's contracts.</summary>
    public static IHostApplicationBuilder AddRecoveryPlans(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IValidateOptions<RecoveryOptions>, CustomPlansValidation>();
        builder.Services.AddSingleton<PlanActionRunner>();
        builder.Services.AddSingleton<RecoveryPlanStore>();
        builder.Services.AddSingleton<RecoveryPlanExecutor>();
        return builder;
    }
}

/// <summary><c>Recovery:CustomPlans:&lt;code&gt;</c> must list known action types; a bad entry stops the service naming the setting.</summary>
internal sealed class CustomPlansValidation : IValidateOptions<RecoveryOptions>
{
    public ValidateOptionsResult Validate(string? name, RecoveryOptions options)
    {
        var failures = new List<string>();
        foreach (var (code, actions) in options.CustomPlans)
        {
            if (actions.Length == 0)
            {
                failures.Add($"Recovery:CustomPlans:{code} lists no actions; give at least one of {string.Join(", ", PlanBuilder.ActionNames.Keys)}.");
            }
            for (var i = 0; i < actions.Length; i++)
            {
                if (!PlanBuilder.ActionNames.ContainsKey(actions[i]))
                {
                    failures.Add($"Recovery:CustomPlans:{code}:{i} is '{actions[i]}'; expected one of {string.Join(", ", PlanBuilder.ActionNames.Keys)}.");
                }
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
