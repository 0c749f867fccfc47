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

/// <summary>
/// <c>demo.steps</c>: works through <c>{"steps": N, "step_ms": M}</c> steps, saving a checkpoint of its workflow (the
/// task's, or <c>task-&lt;id&gt;</c>) and reporting progress after each one; an attempt that recovery requeued after a crash resumes after the last saved step. With <c>--ledger</c>,
/// appends "task_id fencing_token resumed_from_step" to <c>&lt;ledger&gt;.&lt;pid&gt;</c> when done — the side effect crash tests count.
/// </summary>
internal sealed class StepsHandler(DemoOptions demo) : ITaskHandler
{
    private static readonly SemaphoreSlim LedgerLock = new(1, 1);

    public string TaskType => "demo.steps";

    public async Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var payload = JsonNode.Parse(context.Payload) as JsonObject;
        var steps = payload?["steps"]?.GetValue<int>() ?? 5;
        var stepMs = payload?["step_ms"]?.GetValue<int>() ?? 200;
        var start = 0;
        if (await context.LoadResumeContextAsync(cancellationToken) is { } saved)
        {
            start = JsonNode.Parse(saved)?["step"]?.GetValue<int>() ?? 0;
        }
        for (var step = start; step < steps; step++)
        {
            await Task.Delay(stepMs, cancellationToken);
            // A checkpoint only shortens a retry: one the network loses is skipped, the work goes on.
            await context.TrySaveCheckpointAsync($"step {step + 1}", $"{{\"step\":{step + 1}}}", cancellationToken: cancellationToken);
            await context.ReportProgressAsync(100 * (step + 1) / steps, $"step {step + 1} of {steps}", cancellationToken);
        }
        if (demo.Ledger is { } ledger)
        {
            // A file per process (appends of several processes to one file can overwrite each other) and one writer at a time in it.
            var line = System.Text.Encoding.UTF8.GetBytes($"{context.TaskId} {context.FencingToken} {start}\n");
            await LedgerLock.WaitAsync(cancellationToken);
            try
            {
                await using var file = new FileStream($"{ledger}.{Environment.ProcessId}", FileMode.Append, FileAccess.Write, FileShare.Read);
                await file.WriteAsync(line, cancellationToken);
                await file.FlushAsync(cancellationToken);
            }
            finally
            {
                LedgerLock.Release();
            }
        }
        return new JsonObject { ["steps"] = steps, ["resumed_from"] = start }.ToJsonString(JsonSerializerOptions.Web);
    }
}
