using Lifeline.Recovery.Options;
using Microsoft.Extensions.Options;

namespace Lifeline.Recovery.Notifications;

internal static class NotificationsRegistration
{
    /// <summary>The webhook outbox and its dispatcher (every instance delivers the webhooks it has configured).</summary>
    public static IHostApplicationBuilder AddNotifications(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IValidateOptions<RecoveryOptions>, WebhookOptionsValidation>();
        builder.Services.AddHttpClient(WebhookDispatcher.HttpClientName, c => c.Timeout = WebhookDispatcher.AttemptTimeout);
        builder.Services.AddSingleton<NotificationOutbox>();
        builder.Services.AddHostedService<WebhookDispatcher>();
        return builder;
    }
}

/// <summary><c>Recovery:Webhooks</c>: unique names and absolute http(s) URLs; a bad entry stops the service naming the setting.</summary>
internal sealed class WebhookOptionsValidation : IValidateOptions<RecoveryOptions>
{
    public ValidateOptionsResult Validate(string? name, RecoveryOptions options)
    {
        var failures = new List<string>();
        var duplicates = options.Webhooks.GroupBy(w => w.Name, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (duplicates.Count > 0)
        {
            failures.Add($"Recovery:Webhooks has duplicate names: {string.Join(", ", duplicates)}.");
        }
        for (var i = 0; i < options.Webhooks.Count; i++)
        {
            var url = options.Webhooks[i].Url;
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                failures.Add($"Recovery:Webhooks:{i}:Url is '{url}'; expected an absolute http(s) URL.");
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
