using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;
using Task = Lifeline.Queue.V1.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.Consistency;

/// <summary>Reads of single tasks and workers that a fix re-validates against (null: unknown).</summary>
internal static class LiveView
{
    public static async Task<Task?> TaskOrNullAsync(this SuiteClients clients, string tenant, string taskId, CancellationToken ct)
    {
        try
        {
            return (await clients.Queue.GetTaskAsync(new GetTaskRequest { TaskId = taskId }, ServiceCall.For(tenant, ct))).Task;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    public static async Task<Worker?> WorkerOrNullAsync(this SuiteClients clients, string tenant, string workerId, CancellationToken ct)
    {
        try
        {
            return (await clients.Registry.GetWorkerAsync(new GetWorkerRequest { WorkerId = workerId }, ServiceCall.For(tenant, ct))).Worker;
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument)
        {
            return null;
        }
    }

    public static bool IsLeased(this Task task) => task.Status is TaskStatus.Assigned or TaskStatus.Running;

    /// <summary>Why the registry does not consider the worker alive (null: it is alive).</summary>
    public static string? Gone(this Worker? worker) => worker switch
    {
        null => "unknown to the registry",
        { DeregisteredAt: not null } => "deregistered",
        { Status: WorkerStatus.Offline } => "offline",
        _ => null,
    };

    public static string Name(this TaskStatus status) =>
        QueueReflection.Descriptor.EnumTypes.First(e => e.Name == "TaskStatus").FindValueByNumber((int)status)?.Name ?? status.ToString();

    public static string Text(this IReadOnlyDictionary<string, string> details, string key) => details.TryGetValue(key, out var value) ? value : "";

    public static long Number(this IReadOnlyDictionary<string, string> details, string key) =>
        long.TryParse(details.Text(key), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : 0;
}
