using System.Text.Json;
using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.Queue.Maintenance;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Npgsql;

namespace Lifeline.Queue.Recovery;

/// <summary>
/// RecoverTask with RECOVERY_ACTION_TIMEOUT: ends a running attempt that is past its own timeout as
/// <c>timeout</c> with the maintenance's own statement (<see cref="QueueMaintenance.TimeOutOneSql"/>: the transition
/// is the queue's, <see cref="TaskLifecycle.TimeOut"/>), for when the maintenance did not (it was down, or the deadline
/// column disagrees with <c>started_at</c> + <c>timeout_seconds</c>).
/// Allowed whatever the worker's liveness, because the task's own timeout has passed; refused otherwise.
/// The row is locked throughout, so a concurrent outcome or the maintenance happens entirely before or after.
/// </summary>
public sealed class TimeoutEnforcement(NpgsqlDataSource dataSource, ReadySignal readySignal)
{
    /// <summary>The task after the call, and whether this call ended it (false: it had already timed out under this token).</summary>
    public async Task<(TaskRecord Task, bool Changed)> EnforceAsync(string tenant, Guid id, long token, string reasonCode, CancellationToken cancellationToken)
    {
        var (task, changed, resolution) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var (current, _, past) = await TaskRecovery.LockAsync(connection, tx, tenant, id, ct);
            if (current.Status == TaskState.Timeout && current.FencingToken == token)
            {
                return (current, false, (Resolution?)null);
            }
            if (current.FencingToken != token)
            {
                throw new StaleFencingTokenException(id, token, current.FencingToken);
            }
            if (current.Status != TaskState.Running)
            {
                throw new InvalidTaskStateException(id, current.Status, "ending the attempt as timed out");
            }
            if (!past)
            {
                throw new PreconditionFailedException("NOT_TIMED_OUT",
                    $"Task {id} started at {current.StartedAt:O} with a timeout of {current.TimeoutSeconds} s; it is not past its timeout.")
                {
                    Metadata = { ["task_id"] = id.ToString(), ["timeout_seconds"] = current.TimeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                };
            }
            TaskRecord ended;
            await using (var command = new NpgsqlCommand(QueueMaintenance.TimeOutOneSql, connection, tx))
            {
                command.Parameters.AddWithValue("id", id);
                command.Parameters.AddWithValue("tenant", tenant);
                command.Parameters.AddWithValue("token", token);
                command.Parameters.AddWithValue("details", JsonSerializer.Serialize(new Dictionary<string, string>
                {
                    ["action"] = "timeout",
                    ["error_code"] = reasonCode,
                }));
                await using var reader = await command.ExecuteReaderAsync(ct);
                if (!await reader.ReadAsync(ct))
                {
                    throw new ConcurrencyConflictException($"Task {id} changed while it was being timed out; retry.", TimeSpan.FromMilliseconds(100));
                }
                ended = TaskRecord.Read(reader);
            }
            var resolution = ended.HasDependents
                ? await DependencyResolver.ResolveAsync(connection, tx, [new EndedTask(id, TaskState.Timeout)], ct)
                : null;
            await tx.CommitAsync(ct);
            return (ended, true, resolution);
        }, cancellationToken);
        foreach (var ready in resolution?.TenantsWithReadyTasks ?? [])
        {
            readySignal.Notify(ready);
        }
        return (task, changed);
    }
}
