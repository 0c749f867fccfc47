using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.SystemState;

/// <summary>Whole listings of the other services (every page), for the tenants recovery covers.</summary>
public static class SuiteReads
{
    /// <summary>Every worker the registry has for a tenant, deregistered ones included.</summary>
    public static async Task<IReadOnlyList<Worker>> AllWorkersAsync(this SuiteClients clients, string tenant, CancellationToken ct)
    {
        var workers = new List<Worker>();
        var token = "";
        do
        {
            var page = await clients.Registry.ListWorkersAsync(new ListWorkersRequest { PageSize = 1000, PageToken = token }, ServiceCall.For(tenant, ct));
            workers.AddRange(page.Workers);
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        return workers;
    }

    /// <summary>Every task of a tenant in one status.</summary>
    public static async Task<IReadOnlyList<Queue.V1.Task>> TasksAsync(this SuiteClients clients, string tenant, Queue.V1.TaskStatus status, int pageSize,
        CancellationToken ct)
    {
        var tasks = new List<Queue.V1.Task>();
        var token = "";
        do
        {
            var page = await clients.Queue.ListTasksAsync(new ListTasksRequest { Status = status, PageSize = pageSize, PageToken = token }, ServiceCall.For(tenant, ct));
            tasks.AddRange(page.Tasks);
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        return tasks;
    }

    /// <summary>The registry's status name of a worker (<c>online</c>, <c>offline</c> …), as stored in snapshots.</summary>
    public static string StatusName(this Worker worker) => worker.Status switch
    {
        WorkerStatus.Online => "online",
        WorkerStatus.Busy => "busy",
        WorkerStatus.Draining => "draining",
        WorkerStatus.Offline => "offline",
        WorkerStatus.Error => "error",
        _ => "unknown",
    };

    public static bool IsDeregistered(this Worker worker) => worker.DeregisteredAt is not null;
}
