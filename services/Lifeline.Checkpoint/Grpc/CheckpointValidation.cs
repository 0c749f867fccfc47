using System.Text.RegularExpressions;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Rollbacks;
using Lifeline.Checkpoint.Storage;
using Lifeline.Checkpoint.V1;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Checkpoint.Grpc;

/// <summary>Contract requests → validated domain requests; every violation of a request is reported together.</summary>
internal static partial class CheckpointValidation
{
    [GeneratedRegex("^[A-Za-z0-9._:/-]{1,200}$")]
    private static partial Regex WorkflowIdPattern();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Pattern();

    public static string WorkflowId(Violations v, string value, string field = "workflow_id")
    {
        if (string.IsNullOrEmpty(value))
        {
            v.Add(field, "is required");
        }
        else if (!WorkflowIdPattern().IsMatch(value))
        {
            v.Add(field, "must be 1 to 200 characters of letters, digits, '.', '_', '-', ':' and '/'");
        }
        return value;
    }

    public static string WorkflowId(string value)
    {
        var v = new Violations();
        WorkflowId(v, value);
        v.ThrowIfAny();
        return value;
    }

    public static Guid CheckpointId(string value, string field = "checkpoint_id")
    {
        var v = new Violations();
        var id = v.Uuid(field, value);
        v.ThrowIfAny();
        return id;
    }

    public static string Sha256(string value, string field = "sha256")
    {
        var v = new Violations();
        v.AddIf(!Sha256Pattern().IsMatch(value), field, "must be a SHA-256 as 64 lowercase hex digits");
        v.ThrowIfAny();
        return value;
    }

    /// <summary>A checkpoint to save and its canonical bytes (checked against the size limit).</summary>
    public static (NewCheckpoint Spec, byte[] Canonical) Create(CreateCheckpointRequest request, int maxStateBytes)
    {
        var v = new Violations();
        WorkflowId(v, request.WorkflowId);
        if (string.IsNullOrEmpty(request.Name))
        {
            v.Add("name", "is required");
        }
        v.AddIf(request.Name.Length > 200, "name", "must be at most 200 characters");
        if (request.Type == CheckpointType.Unspecified)
        {
            v.Add("type", "is required: one of AUTO, MANUAL, PHASE_START, PHASE_END, AGENT_START, AGENT_END, MILESTONE, PRE_DEPLOY, RECOVERY");
        }
        else
        {
            v.DefinedEnum("type", request.Type);
        }
        v.AddIf(request.Phase < 0, "phase", $"must not be negative; got {request.Phase}");
        v.AddIf(request.Agent.Length > 200, "agent", "must be at most 200 characters");
        v.AddIf(request.Description.Length > 4096, "description", "must be at most 4,096 characters");
        v.AddIf(request.Tags.Count > 32, "tags", $"must have at most 32 entries; got {request.Tags.Count}");
        for (var i = 0; i < request.Tags.Count && i < 32; i++)
        {
            v.AddIf(request.Tags[i].Length is 0 or > 64, $"tags[{i}]", "must be 1 to 64 characters");
        }
        var parentId = v.Uuid("parent_id", request.ParentId, required: false);
        byte[] canonical = [];
        if (request.State is null)
        {
            v.Add("state", "is required");
        }
        else if (State(v, request.State))
        {
            canonical = CanonicalState.Serialize(request.State);
            v.AddIf(canonical.Length > maxStateBytes, "state",
                $"takes {canonical.Length} bytes in canonical form; the limit is {maxStateBytes} (Checkpoint:MaxStateBytes)");
        }
        v.ThrowIfAny();
        return (new NewCheckpoint(request.WorkflowId, request.Name, (int)request.Type, request.Phase, request.Agent, request.Description,
            request.Tags.ToArray(), request.State!, parentId == Guid.Empty ? null : parentId), canonical);
    }

    /// <summary>Checks a state's parts; true when it can be serialized (its JSON parts are objects).</summary>
    private static bool State(Violations v, CheckpointState state)
    {
        var serializable = true;
        if (state.Workflow is { } wf)
        {
            v.AddIf(wf.CurrentPhase < 0, "state.workflow.current_phase", "must not be negative");
            v.AddIf(wf.Status.Length > 64, "state.workflow.status", "must be at most 64 characters");
            v.AddIf(wf.CompletedPhases.Any(p => p < 0), "state.workflow.completed_phases", "must not contain negative phases");
        }
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < state.Artifacts.Count; i++)
        {
            var a = state.Artifacts[i];
            var field = $"state.artifacts[{i}]";
            if (a.Id.Length is 0 or > 200)
            {
                v.Add(field + ".id", "must be 1 to 200 characters");
            }
            else if (!ids.Add(a.Id))
            {
                v.Add(field + ".id", $"'{a.Id}' appears more than once");
            }
            v.AddIf(a.Checksum.Length > 0 && !Sha256Pattern().IsMatch(a.Checksum), field + ".checksum", "must be a SHA-256 as 64 lowercase hex digits");
            v.AddIf(a.Version < 0, field + ".version", "must not be negative");
            v.AddIf(a.Size < 0, field + ".size", "must not be negative");
            v.AddIf(a.Type.Length > 200 || a.Name.Length > 200, field, "type and name must be at most 200 characters");
            v.AddIf(a.Ref.Length > 2048, field + ".ref", "must be at most 2,048 characters");
        }
        using (var context = CanonicalState.ParseObject(state.Context, out var problem))
        {
            if (context is null)
            {
                v.Add("state.context", problem!);
                serializable = false;
            }
        }
        foreach (var (agent, json) in state.AgentStates)
        {
            var field = $"state.agent_states[{agent}]";
            v.AddIf(agent.Length is 0 or > 200, field, "agent names must be 1 to 200 characters");
            using var parsed = CanonicalState.ParseObject(json, out var problem);
            if (parsed is null)
            {
                v.Add(field, problem!);
                serializable = false;
            }
        }
        return serializable;
    }

    public static CheckpointFilter List(ListCheckpointsRequest request)
    {
        var v = new Violations();
        WorkflowId(v, request.WorkflowId);
        for (var i = 0; i < request.CheckpointTypes.Count; i++)
        {
            v.AddIf(request.CheckpointTypes[i] == CheckpointType.Unspecified || !Enum.IsDefined(request.CheckpointTypes[i]), $"checkpoint_types[{i}]", "is not a checkpoint type");
        }
        var pageSize = v.PageSize("page_size", request.PageSize, 100, 1000);
        long? before = null;
        if (request.PageToken.Length > 0)
        {
            if (long.TryParse(request.PageToken, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seq) && seq > 0)
            {
                before = seq;
            }
            else
            {
                v.Add("page_token", "is not a page token returned by this service");
            }
        }
        var after = request.CreatedAfter?.ToDateTime();
        var beforeTime = request.CreatedBefore?.ToDateTime();
        v.AddIf(after is { } a && beforeTime is { } b && a >= b, "created_before", "must be after created_after");
        v.ThrowIfAny();
        return new CheckpointFilter(request.CheckpointTypes.Select(t => (int)t).ToArray(), request.Tags.ToArray(), after, beforeTime, request.ValidOnly, pageSize, before);
    }

    public static (Guid Id, string Reason) Invalidate(InvalidateCheckpointRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("checkpoint_id", request.CheckpointId);
        v.AddIf(request.Reason.Length is 0 or > 1000, "reason", "is required: 1 to 1,000 characters");
        v.ThrowIfAny();
        return (id, request.Reason);
    }

    public static CleanupRules Cleanup(CleanupCheckpointsRequest request)
    {
        var v = new Violations();
        WorkflowId(v, request.WorkflowId);
        v.AddIf(request.KeepLast < 0, "keep_last", "must not be negative");
        v.AddIf(request.KeepLast == 0 && request.OlderThan is null, "keep_last",
            "a cleanup needs keep_last or older_than (or both): without either it would remove everything but the head");
        v.ThrowIfAny();
        return new CleanupRules(request.KeepLast, request.KeepPhaseEndpoints, request.OlderThan?.ToDateTime(), request.DryRun);
    }

    public static (Guid From, Guid To) Diff(DiffCheckpointsRequest request)
    {
        var v = new Violations();
        var from = v.Uuid("from_checkpoint_id", request.FromCheckpointId);
        var to = v.Uuid("to_checkpoint_id", request.ToCheckpointId);
        v.ThrowIfAny();
        return (from, to);
    }

    public static RollbackCommand Rollback(RollbackRequest request, TimeSpan defaultTimeout)
    {
        var v = new Violations();
        WorkflowId(v, request.WorkflowId);
        RollbackTarget target = new RollbackTarget.ToLatestValid();
        switch (request.TargetCase)
        {
            case RollbackRequest.TargetOneofCase.CheckpointId:
                target = new RollbackTarget.ToCheckpoint(v.Uuid("checkpoint_id", request.CheckpointId));
                break;
            case RollbackRequest.TargetOneofCase.LatestValid:
                v.AddIf(!request.LatestValid, "latest_valid", "must be true when given");
                break;
            case RollbackRequest.TargetOneofCase.PhaseStart:
                v.AddIf(request.PhaseStart < 0, "phase_start", "must not be negative");
                target = new RollbackTarget.ToPhaseStart(request.PhaseStart);
                break;
            default:
                v.Add("target", "is required: checkpoint_id, latest_valid or phase_start");
                break;
        }
        var strategy = request.Strategy == RollbackStrategy.Unspecified ? RollbackStrategy.Full : request.Strategy;
        v.DefinedEnum("strategy", strategy);
        var scope = Scope(v, strategy, request.Scope);
        var timeout = defaultTimeout;
        if (request.Timeout is { } t)
        {
            timeout = t.ToTimeSpan();
            v.AddIf(timeout <= TimeSpan.Zero || timeout > TimeSpan.FromHours(1), "timeout", "must be more than 0 and at most 1 hour");
        }
        var expected = v.Uuid("expected_head_id", request.ExpectedHeadId, required: false);
        v.ThrowIfAny();
        return new RollbackCommand(request.WorkflowId, target, strategy, scope, request.CreateBackup, request.DryRun, request.Force, timeout,
            expected == Guid.Empty ? null : expected);
    }

    private static RollbackPlan.Selection Scope(Violations v, RollbackStrategy strategy, RollbackScope? scope)
    {
        if (strategy == RollbackStrategy.Full)
        {
            return RollbackPlan.Selection.Everything;
        }
        scope ??= new RollbackScope();
        ItemSelection Part(ItemSelection? s) => s ?? new ItemSelection();
        var parts = new[] { ("scope.artifacts", Part(scope.Artifacts)), ("scope.context", Part(scope.Context)), ("scope.agent_states", Part(scope.AgentStates)) };
        foreach (var (field, part) in parts)
        {
            v.AddIf(part.All && part.Keys.Count > 0, field, "give either all or keys, not both");
            v.AddIf(strategy == RollbackStrategy.Partial && part.Keys.Count > 0, field + ".keys",
                "a PARTIAL rollback restores whole parts (all); use SELECTIVE to restore single items");
            v.AddIf(strategy == RollbackStrategy.Selective && part.All, field + ".all",
                "a SELECTIVE rollback restores single items (keys); use PARTIAL to restore whole parts");
            for (var i = 0; i < part.Keys.Count; i++)
            {
                v.AddIf(part.Keys[i].Length is 0 or > 200, $"{field}.keys[{i}]", "must be 1 to 200 characters");
            }
        }
        var selection = new RollbackPlan.Selection(scope.Workflow,
            Part(scope.Artifacts).All, Part(scope.Artifacts).Keys.Distinct().ToArray(),
            Part(scope.Context).All, Part(scope.Context).Keys.Distinct().ToArray(),
            Part(scope.AgentStates).All, Part(scope.AgentStates).Keys.Distinct().ToArray(),
            scope.MessageBusState);
        var empty = !selection.Workflow && !selection.Bus && !selection.AllArtifacts && !selection.AllContext && !selection.AllAgents
            && selection.Artifacts.Length == 0 && selection.Context.Length == 0 && selection.Agents.Length == 0;
        v.AddIf(empty, "scope", $"a {strategy.ToString().ToUpperInvariant()} rollback needs a scope naming what to restore");
        return selection;
    }
}
