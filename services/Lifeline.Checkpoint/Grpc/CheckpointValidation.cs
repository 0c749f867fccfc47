using System.Text.RegularExpressions;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Rollbacks;
using Lifeline.Checkpoint.Storage;
using Lifeline.Checkpoint.V1;
using Lifeline.ServiceDefaults.Paging;
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
    public const int MaxTags = 32;
    public const int MaxArtifacts = 10_000;
    public const int MaxAgentStates = 1_000;
    public const int MaxScopeKeys = 1_000;

    public static (NewCheckpoint Spec, byte[] Canonical) Create(CreateCheckpointRequest request, int maxStateBytes)
    {
        // Size before work: every repeated field's count first, before any item is looked at.
        RepeatedFields.ThrowIfCountOutside("tags", request.Tags.Count, MaxTags, items: "tags");
        if (request.State is { } counted)
        {
            RepeatedFields.ThrowIfCountOutside("state.artifacts", counted.Artifacts.Count, MaxArtifacts, items: "artifacts");
            RepeatedFields.ThrowIfCountOutside("state.agent_states", counted.AgentStates.Count, MaxAgentStates, items: "agent states");
        }
        var v = new Violations();
        WorkflowId(v, request.WorkflowId);
        v.Text("name", request.Name, 200, required: true);
        if (request.Type == CheckpointType.Unspecified)
        {
            v.Add("type", "is required: one of AUTO, MANUAL, PHASE_START, PHASE_END, AGENT_START, AGENT_END, MILESTONE, PRE_DEPLOY, RECOVERY");
        }
        else
        {
            v.DefinedEnum("type", request.Type);
        }
        v.AddIf(request.Phase < 0, "phase", $"must not be negative; got {request.Phase}");
        v.Text("agent", request.Agent, 200);
        v.Text("description", request.Description, 4096);
        RepeatedFields.CheckItems(v, "tags", request.Tags.Count, (v, i) => v.Text($"tags[{i}]", request.Tags[i], 64, required: true));
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
        RepeatedFields.CheckItems(v, "state.artifacts", state.Artifacts.Count, (v, i) =>
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
        });
        serializable &= JsonPart(v, "state.context", state.Context);
        var agents = state.AgentStates.ToList();
        var agentsSerializable = true;
        // Agent states left unchecked (after the first problems) are not known to be serializable.
        var allAgentsChecked = RepeatedFields.CheckItems(v, "state.agent_states", agents.Count, (v, i) =>
        {
            var (agent, json) = (agents[i].Key, agents[i].Value);
            // The name is part of the field path only once it is known to be short and printable.
            var printable = agent.Length is > 0 and <= 64 && !agent.Contains('\0', StringComparison.Ordinal);
            var field = printable ? $"state.agent_states[{agent}]" : $"state.agent_states (entry {i})";
            if (agent.Length is 0 or > 200 || agent.Contains('\0', StringComparison.Ordinal))
            {
                v.Add(field, "agent names must be 1 to 200 characters without NUL");
            }
            agentsSerializable &= JsonPart(v, field, json);
        });
        return serializable && agentsSerializable && allAgentsChecked;
    }

    /// <summary>
    /// A JSON part of a state (context, an agent state): a JSON object the canonical writer can serialize and the
    /// rest of the suite can store (a state is handed on, e.g. into a resumed task's payload, as jsonb).
    /// </summary>
    private static bool JsonPart(Violations v, string field, string json)
    {
        // Storable first: it also finds escapes that would make the canonical parse throw (an unpaired surrogate).
        if (json.Length > 0 && StorableJson.Check(v, field, json, CanonicalState.MaxDepth) is null)
        {
            return false;
        }
        using var parsed = CanonicalState.ParseObject(json, out var problem);
        if (parsed is null)
        {
            v.Add(field, problem!);
            return false;
        }
        return true;
    }

    /// <summary>The listing's page token: the sequence of the last checkpoint of the previous page.</summary>
    public const string CheckpointsListing = "checkpoint.checkpoints";

    public static CheckpointFilter List(ListCheckpointsRequest request)
    {
        RepeatedFields.ThrowIfCountOutside("checkpoint_types", request.CheckpointTypes.Count, 100, items: "types");
        RepeatedFields.ThrowIfCountOutside("tags", request.Tags.Count, MaxTags, items: "tags");
        var v = new Violations();
        WorkflowId(v, request.WorkflowId);
        RepeatedFields.CheckItems(v, "checkpoint_types", request.CheckpointTypes.Count, (v, i) =>
            v.AddIf(request.CheckpointTypes[i] == CheckpointType.Unspecified || !Enum.IsDefined(request.CheckpointTypes[i]), $"checkpoint_types[{i}]", "is not a checkpoint type"));
        var pageSize = v.PageSize("page_size", request.PageSize, 100, 1000);
        long? before = null;
        PageTokens.TryRead(v, request.PageToken, token =>
        {
            var ok = PageTokens.TryDecode(CheckpointsListing, token, out long sequence) && sequence > 0;
            before = ok ? sequence : null;
            return ok;
        });
        var after = v.Timestamp("created_after", request.CreatedAfter);
        var beforeTime = v.Timestamp("created_before", request.CreatedBefore);
        v.AddIf(after is { } a && beforeTime is { } b && a >= b, "created_before", "must be after created_after");
        v.ThrowIfAny();
        return new CheckpointFilter(request.CheckpointTypes.Select(t => (int)t).ToArray(), request.Tags.ToArray(), after, beforeTime, request.ValidOnly, pageSize, before);
    }

    public static (Guid Id, string Reason) Invalidate(InvalidateCheckpointRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("checkpoint_id", request.CheckpointId);
        v.Text("reason", request.Reason, 1000, required: true);
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
        var olderThan = v.Timestamp("older_than", request.OlderThan);
        v.ThrowIfAny();
        return new CleanupRules(request.KeepLast, request.KeepPhaseEndpoints, olderThan, request.DryRun);
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
        var timeout = v.Duration("timeout", request.Timeout, TimeSpan.FromTicks(1), TimeSpan.FromHours(1), defaultTimeout);
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
            RepeatedFields.ThrowIfCountOutside(field + ".keys", part.Keys.Count, MaxScopeKeys, items: "keys");
        }
        foreach (var (field, part) in parts)
        {
            v.AddIf(part.All && part.Keys.Count > 0, field, "give either all or keys, not both");
            v.AddIf(strategy == RollbackStrategy.Partial && part.Keys.Count > 0, field + ".keys",
                "a PARTIAL rollback restores whole parts (all); use SELECTIVE to restore single items");
            v.AddIf(strategy == RollbackStrategy.Selective && part.All, field + ".all",
                "a SELECTIVE rollback restores single items (keys); use PARTIAL to restore whole parts");
            RepeatedFields.CheckItems(v, field + ".keys", part.Keys.Count, (v, i) =>
                v.AddIf(part.Keys[i].Length is 0 or > 200, $"{field}.keys[{i}]", "must be 1 to 200 characters"));
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
