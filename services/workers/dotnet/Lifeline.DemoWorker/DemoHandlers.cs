using System.Text.Json;
using System.Text.Json.Nodes;
using Lifeline.Worker;

namespace Lifeline.DemoWorker;

/// <summary><c>demo.echo</c>: returns <c>{"echo": payload}</c>; with <c>{"sleep_seconds": N}</c> it first works for N seconds, reporting progress.</summary>
internal sealed class EchoHandler : ITaskHandler
{
    public string TaskType => "demo.echo";

    public async Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var payload = JsonNode.Parse(context.Payload);
        if (payload is JsonObject fields && fields["sleep_seconds"]?.GetValue<double>() is > 0 and var seconds)
        {
            var total = TimeSpan.FromSeconds(seconds);
            var started = TimeProvider.System.GetTimestamp();
            for (var elapsed = TimeSpan.Zero; elapsed < total; elapsed = TimeProvider.System.GetElapsedTime(started))
            {
                await context.ReportProgressAsync((int)(100 * elapsed / total), $"{elapsed.TotalSeconds:0}s of {total.TotalSeconds:0}s", cancellationToken);
                var rest = total - elapsed;
                await Task.Delay(rest < TimeSpan.FromSeconds(1) ? rest : TimeSpan.FromSeconds(1), cancellationToken);
            }
        }

        return new JsonObject { ["echo"] = payload }.ToJsonString(JsonSerializerOptions.Web);
    }
}

/// <summary><c>demo.fail</c>: always fails with the non-retryable error <c>DEMO_FAILURE</c>.</summary>
internal sealed class FailHandler : ITaskHandler
{
    public string TaskType => "demo.fail";

    public Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken) =>
        throw new TaskFailedException("DEMO_FAILURE", $"demo.fail always fails (task {context.TaskId})", retryable: false);
}
