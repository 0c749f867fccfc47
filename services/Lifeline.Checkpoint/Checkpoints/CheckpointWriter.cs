using Lifeline.Checkpoint.Options;
using Lifeline.Checkpoint.Storage;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.Extensions.Options;
using Npgsql;
using Lifeline.Checkpoint.Telemetry;

namespace Lifeline.Checkpoint.Checkpoints;

/// <summary>
/// Saves checkpoints. The stored form (delta against the parent or full) is computed before the
/// transaction; the transaction then locks the workflow's head row and writes only if the head is
/// still the parent the state was built on, so two writers never lose each other's checkpoint.
/// </summary>
public sealed class CheckpointWriter(CheckpointStore store, StateCache cache, IOptions<CheckpointOptions> options, CheckpointTelemetry telemetry)
{
    /// <param name="canonical">The state's canonical bytes (validation computed them to check the size limit).</param>
    public async Task<CheckpointRecord> CreateAsync(string tenant, NewCheckpoint spec, byte[] canonical, CancellationToken ct)
    {
        var startedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        using var activity = CheckpointTelemetry.Source.StartActivity("checkpoint.write");
        activity?.SetTag(Lifeline.ServiceDefaults.Telemetry.TaskTrace.TenantTag, tenant);
        activity?.SetTag("lifeline.workflow.id", spec.WorkflowId);
        var checksum = CanonicalState.Checksum(canonical);
        // The stored form is computed before the lock against the parent the writer names, or the head as read now.
        var parentId = spec.ParentId ?? (await store.ReadHeadAsync(tenant, spec.WorkflowId, ct))?.HeadId;
        var encoded = await EncodeAsync(tenant, spec.WorkflowId, parentId, canonical, ct);

        await using var connection = await store.OpenAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var head = (await CheckpointStore.LockWorkflowAsync(connection, tx, tenant, spec.WorkflowId, create: true, ct))!;
        if (head.HeadId != parentId)
        {
            if (spec.ParentId is { } given)
            {
                throw HeadMoved(spec.WorkflowId, given, head.HeadId);
            }
            // No parent named: the parent is whatever the head is now. Re-encode against it under the lock (it cannot move
            // while we hold it), so a busy workflow never turns a parentless writer away.
            parentId = head.HeadId;
            encoded = await EncodeAsync(connection, tx, tenant, spec.WorkflowId, parentId, canonical, ct);
        }
        var record = await CheckpointStore.InsertAsync(connection, tx, tenant, head, spec, canonical, checksum, encoded, parentId, ct);
        await tx.CommitAsync(ct);
        cache.Put(record.Id, canonical);
        telemetry.Written(record, startedAt);
        activity?.SetTag("lifeline.checkpoint.size", record.SizeBytes);
        return record;
    }

    private async Task<EncodedState> EncodeAsync(string tenant, string workflowId, Guid? parentId, byte[] canonical, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        return await EncodeAsync(connection, null, tenant, workflowId, parentId, canonical, ct);
    }

    /// <summary>
    /// The stored form of a state whose parent is <paramref name="parentId"/>. The parent must belong to
    /// the workflow; a parent whose own state fails verification is not used as a delta base.
    /// </summary>
    private async Task<EncodedState> EncodeAsync(
        NpgsqlConnection connection, NpgsqlTransaction? tx, string tenant, string workflowId, Guid? parentId, byte[] canonical, CancellationToken ct)
    {
        var maxChain = options.Value.MaxDeltaChain;
        if (parentId is not { } pid)
        {
            return StateCodec.Encode(canonical, null, null, 0, maxChain);
        }
        var parent = await CheckpointStore.FindAsync(connection, tx, tenant, pid, ct)
            ?? throw ValidationException.For("parent_id", $"checkpoint '{pid}' does not exist");
        if (parent.WorkflowId != workflowId)
        {
            throw ValidationException.For("parent_id", $"checkpoint '{pid}' belongs to workflow '{parent.WorkflowId}', not '{workflowId}'");
        }
        if (maxChain == 0 || parent.ChainDepth + 1 > maxChain)
        {
            return StateCodec.Encode(canonical, null, null, 0, maxChain);
        }
        if (!cache.TryGet(pid, out var parentState))
        {
            try
            {
                parentState = await CheckpointStore.ReconstructAsync(connection, tx, parent, ct);
            }
            catch (DataLossException)
            {
                return StateCodec.Encode(canonical, null, null, 0, maxChain);
            }
            cache.Put(pid, parentState);
        }
        return StateCodec.Encode(canonical, pid, parentState, parent.ChainDepth, maxChain);
    }

    public static ConcurrencyConflictException HeadMoved(string workflowId, Guid expected, Guid? current)
    {
        var e = new ConcurrencyConflictException(
            $"The head of workflow '{workflowId}' is no longer '{expected}' (now '{current}'): another writer saved first. " +
            "Read the new head, merge, and retry with it as parent_id.", TimeSpan.FromMilliseconds(50), "HEAD_MOVED");
        e.Metadata["workflow_id"] = workflowId;
        e.Metadata["expected_head_id"] = expected.ToString();
        e.Metadata["current_head_id"] = current?.ToString() ?? "";
        return e;
    }
}
