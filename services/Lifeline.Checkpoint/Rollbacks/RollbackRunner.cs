using System.Diagnostics;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Storage;
using Lifeline.Checkpoint.V1;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.Checkpoint.Options;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Checkpoint.Rollbacks;

/// <summary>Which checkpoint a rollback goes back to.</summary>
public abstract record RollbackTarget
{
    public sealed record ToCheckpoint(Guid Id) : RollbackTarget;
    public sealed record ToLatestValid : RollbackTarget;
    public sealed record ToPhaseStart(int Phase) : RollbackTarget;
}

/// <summary>A validated rollback request.</summary>
public sealed record RollbackCommand(
    string WorkflowId, RollbackTarget Target, RollbackStrategy Strategy, RollbackPlan.Selection Scope,
    bool CreateBackup, bool DryRun, bool Force, TimeSpan Timeout, Guid? ExpectedHeadId);

public sealed record RollbackOutcome(
    Guid TargetId, Guid? NewHeadId, Guid? BackupId, List<RestoredItem> Items, bool DryRun, bool Verified,
    RollbackStrategy Strategy, TimeSpan Duration, List<Guid> VisitedIds);

/// <summary>
/// Runs a rollback: validate (target, integrity of target and head, ancestry for INCREMENTAL), plan,
/// and — unless a dry run — write the backup and the new head in one transaction with the head row
/// locked, read the new head back and verify it before committing. A failure, the timeout or a
/// cancelled call rolls the transaction back: nothing changes.
/// </summary>
public sealed class RollbackRunner(CheckpointStore store, CheckpointReader reader, StateCache cache, IOptions<CheckpointOptions> options)
{
    private const int PhaseStartType = (int)CheckpointType.PhaseStart;
    private const int RecoveryType = (int)CheckpointType.Recovery;

    public async Task<RollbackOutcome> RunAsync(string tenant, RollbackCommand command, Func<RollbackPhase, int, string, Task> progress, CancellationToken callToken)
    {
        var clock = Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(command.Timeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(callToken, timeout.Token);
        var ct = linked.Token;
        try
        {
            return await RunCoreAsync(tenant, command, progress, clock, ct);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !callToken.IsCancellationRequested)
        {
            throw TimedOut(command);
        }
    }

    private static OperationTimedOutException TimedOut(RollbackCommand command) => new("ROLLBACK_TIMEOUT",
        $"The rollback of workflow '{command.WorkflowId}' did not finish within {command.Timeout.TotalSeconds:0.###} s; nothing was changed.");

    private async Task<RollbackOutcome> RunCoreAsync(
        string tenant, RollbackCommand command, Func<RollbackPhase, int, string, Task> progress, Stopwatch clock, CancellationToken ct)
    {
        await progress(RollbackPhase.Validating, 0, "validating the target and the current head");
        await using var connection = await store.OpenAsync(ct);
        var head = await store.ReadHeadAsync(tenant, command.WorkflowId, ct);
        if (head?.HeadId is not { } headId)
        {
            throw new NotFoundException("workflow", command.WorkflowId);
        }
        if (command.ExpectedHeadId is { } expected && expected != headId)
        {
            throw CheckpointWriter.HeadMoved(command.WorkflowId, expected, headId);
        }
        var target = await ResolveTargetAsync(connection, tenant, command, ct);
        if (!target.IsValid && !command.Force)
        {
            var e = new PreconditionFailedException("CHECKPOINT_INVALID",
                $"Checkpoint '{target.Id}' was invalidated ({target.InvalidReason}); pass force to roll back to it anyway.");
            e.Metadata["checkpoint_id"] = target.Id.ToString();
            throw e;
        }
        var targetState = await CheckpointStore.ReconstructAsync(connection, null, target, ct);
        var headRecord = await CheckpointStore.GetAsync(connection, null, tenant, headId, ct);
        var headState = await ReadHeadStateAsync(connection, headRecord, command, ct);

        var visited = new List<Guid>();
        if (command.Strategy == RollbackStrategy.Incremental)
        {
            visited = await WalkBackAsync(connection, tenant, headRecord, target, progress, ct);
        }
        await progress(RollbackPhase.Validating, 20, $"target '{target.Id}' (sequence {target.Sequence}) verified");

        var current = StateParts.From(headState is null ? new CheckpointState() : CanonicalState.Deserialize(headState));
        var wanted = StateParts.From(CanonicalState.Deserialize(targetState));
        var plan = RollbackPlan.Build(current, wanted, command.Scope);
        if (command.DryRun || plan.Items.Count == 0)
        {
            await progress(RollbackPhase.Complete, 100, command.DryRun
                ? $"dry run: {plan.Items.Count} item(s) would be restored; nothing changed"
                : "the head already equals the target in scope; nothing changed");
            return new RollbackOutcome(target.Id, null, null, plan.Items, command.DryRun, false, command.Strategy, clock.Elapsed, visited);
        }

        await using var tx = await connection.BeginTransactionAsync(ct);
        var locked = (await CheckpointStore.LockWorkflowAsync(connection, tx, tenant, command.WorkflowId, create: false, ct))!;
        if (locked.HeadId != headId)
        {
            throw CheckpointWriter.HeadMoved(command.WorkflowId, headId, locked.HeadId);
        }

        Guid? backupId = null;
        (Guid Id, byte[]? State, int Depth) parent = (headId, headState, headRecord.ChainDepth);
        var position = locked;
        if (command.CreateBackup)
        {
            await progress(RollbackPhase.Backup, 40, "saving the current head as a recovery checkpoint");
            var backupSpec = new NewCheckpoint(command.WorkflowId, "pre-rollback backup", RecoveryType, headRecord.Phase, headRecord.Agent,
                $"The head ({headId}) before a rollback to {target.Id}.", ["pre-rollback-backup"], CanonicalState.Deserialize(headState!), headId);
            var backup = await InsertAsync(connection, tx, tenant, position, backupSpec, headState!, parent, ct);
            backupId = backup.Id;
            parent = (backup.Id, headState, backup.ChainDepth);
            position = position with { HeadId = backup.Id, NextSequence = position.NextSequence + 1 };
        }

        await progress(RollbackPhase.Rollback, 60, $"writing the new head: {plan.Items.Count} item(s) restored");
        var newState = plan.Result.ToState();
        var newCanonical = CanonicalState.Serialize(newState);
        var spec = new NewCheckpoint(command.WorkflowId, $"rollback to {target.Name}", RecoveryType, newState.Workflow.CurrentPhase, "",
            $"{command.Strategy} rollback to checkpoint {target.Id} (sequence {target.Sequence}).", ["rollback"], newState, parent.Id);
        var newHead = await InsertAsync(connection, tx, tenant, position, spec, newCanonical, parent, ct);

        await progress(RollbackPhase.Verify, 80, "reading the new head back and recomputing its checksum");
        var written = await CheckpointStore.ReconstructAsync(connection, tx, newHead, ct);
        var problems = RollbackPlan.Verify(StateParts.From(CanonicalState.Deserialize(written)), current, wanted, command.Scope);
        if (problems.Count > 0)
        {
            throw new PreconditionFailedException("ROLLBACK_VERIFICATION_FAILED",
                "The rolled-back state did not verify; nothing was changed: " + string.Join("; ", problems));
        }
        ct.ThrowIfCancellationRequested();
        if (clock.Elapsed > command.Timeout)
        {
            // The timer may not have fired yet on a busy machine: the deadline is the elapsed time, checked last before committing.
            throw TimedOut(command);
        }
        await tx.CommitAsync(CancellationToken.None); // past this point the rollback happened; don't leave it ambiguous
        cache.Put(newHead.Id, newCanonical);
        await progress(RollbackPhase.Complete, 100, $"new head '{newHead.Id}'");
        return new RollbackOutcome(target.Id, newHead.Id, backupId, plan.Items, false, true, command.Strategy, clock.Elapsed, visited);
    }

    private Task<CheckpointRecord> InsertAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, WorkflowHead position,
        NewCheckpoint spec, byte[] canonical, (Guid Id, byte[]? State, int Depth) parent, CancellationToken ct) =>
        CheckpointStore.InsertAsync(connection, tx, tenant, position, spec, canonical, CanonicalState.Checksum(canonical),
            StateCodec.Encode(canonical, parent.Id, parent.State, parent.Depth, options.Value.MaxDeltaChain), parent.Id, ct);

    private async Task<CheckpointRecord> ResolveTargetAsync(NpgsqlConnection connection, string tenant, RollbackCommand command, CancellationToken ct)
    {
        switch (command.Target)
        {
            case RollbackTarget.ToCheckpoint(var id):
                var record = await CheckpointStore.FindAsync(connection, null, tenant, id, ct)
                    ?? throw new NotFoundException("checkpoint", id.ToString());
                if (record.WorkflowId != command.WorkflowId)
                {
                    throw ValidationException.For("checkpoint_id",
                        $"checkpoint '{id}' belongs to workflow '{record.WorkflowId}', not '{command.WorkflowId}'");
                }
                return record;
            case RollbackTarget.ToLatestValid:
                return (await reader.GetLatestAsync(tenant, command.WorkflowId, ct)).Record;
            case RollbackTarget.ToPhaseStart(var phase):
                var starts = await CheckpointReader.ListAsync(connection, tenant, command.WorkflowId,
                    new CheckpointFilter([PhaseStartType], [], null, null, ValidOnly: !command.Force, PageSize: 1000, null), ct);
                return starts.FirstOrDefault(c => c.Phase == phase)
                    ?? throw new NotFoundException("checkpoint", $"start of phase {phase} in workflow {command.WorkflowId}");
            default:
                throw new ArgumentOutOfRangeException(nameof(command), "unknown rollback target");
        }
    }

    /// <summary>
    /// The head's state; null when it is corrupt and the rollback is a FULL one without a backup, which
    /// replaces everything: that is how a workflow gets out of a corrupt head. Scoped rollbacks (the
    /// parts to keep are unknown) and backups (nothing intact to save) of a corrupt head are DATA_LOSS.
    /// </summary>
    private static async Task<byte[]?> ReadHeadStateAsync(NpgsqlConnection connection, CheckpointRecord head, RollbackCommand command, CancellationToken ct)
    {
        try
        {
            return await CheckpointStore.ReconstructAsync(connection, null, head, ct);
        }
        catch (DataLossException) when (command.Strategy == RollbackStrategy.Full && !command.CreateBackup)
        {
            return null;
        }
    }

    /// <summary>INCREMENTAL: steps from the head back to the target along parent links, verifying each checkpoint on the way.</summary>
    private static async Task<List<Guid>> WalkBackAsync(NpgsqlConnection connection, string tenant, CheckpointRecord head, CheckpointRecord target,
        Func<RollbackPhase, int, string, Task> progress, CancellationToken ct)
    {
        var path = new List<CheckpointRecord> { head };
        var current = head;
        while (current.Id != target.Id)
        {
            if (current.ParentId is not { } parentId || current.Sequence < target.Sequence)
            {
                var e = new PreconditionFailedException("TARGET_NOT_ANCESTOR",
                    $"Checkpoint '{target.Id}' is not an ancestor of the head '{head.Id}'; an incremental rollback steps back along parent links.");
                e.Metadata["checkpoint_id"] = target.Id.ToString();
                throw e;
            }
            current = await CheckpointStore.GetAsync(connection, null, tenant, parentId, ct);
            path.Add(current);
        }
        for (var i = 1; i < path.Count; i++)
        {
            await CheckpointStore.ReconstructAsync(connection, null, path[i], ct);
            await progress(RollbackPhase.Validating, 20 * i / path.Count, $"step {i}/{path.Count - 1}: checkpoint '{path[i].Id}' verified");
        }
        return path.Select(c => c.Id).ToList();
    }
}
