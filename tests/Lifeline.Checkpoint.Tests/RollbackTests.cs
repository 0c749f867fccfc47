using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>
/// Rollbacks write a new head whose scoped parts equal the target's and whose other parts equal the
/// previous head's, stream their phases, and change nothing when refused, dry or timed out.
/// </summary>
public sealed class RollbackTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private CheckpointService.CheckpointServiceClient Client => env.Checkpoint.Checkpoints();

    private static CheckpointState S(int n, string context, Dictionary<string, string> agents, params ArtifactRef[] artifacts)
    {
        var state = new CheckpointState
        {
            Workflow = new WorkflowState { CurrentPhase = n, Status = $"s{n}" },
            Context = context,
            MessageBusState = new MessageBusState { LastProcessedId = $"l{n}", PendingMessages = { $"m{n}" } },
        };
        state.Workflow.CompletedPhases.AddRange(Enumerable.Range(1, n - 1));
        state.Artifacts.AddRange(artifacts);
        foreach (var (name, value) in agents)
        {
            state.AgentStates[name] = value;
        }
        return state;
    }

    private static readonly CheckpointState S1 = S(1, """{"x":1,"y":"one","w":"only-in-1"}""",
        new() { ["planner"] = """{"p":1}""", ["coder"] = """{"c":1}""" }, Artifact("a1", 1), Artifact("a2", 1));

    private static readonly CheckpointState S2 = S(2, """{"x":2,"y":"two"}""",
        new() { ["planner"] = """{"p":2}""", ["coder"] = """{"c":2}""" }, Artifact("a1", 2), Artifact("a2", 1));

    private static readonly CheckpointState S3 = S(3, """{"x":3,"y":"three","z":"only-in-3"}""",
        new() { ["planner"] = """{"p":3}""", ["coder"] = """{"c":3}""", ["reviewer"] = """{"r":3}""" }, Artifact("a1", 3), Artifact("a2", 2), Artifact("a3", 1));

    private sealed record History(string Workflow, List<CheckpointMetadata> Checkpoints)
    {
        public CheckpointMetadata Head => Checkpoints[^1];
    }

    private async Task<History> HistoryAsync(params (CheckpointState State, CheckpointType Type, int Phase)[] steps)
    {
        var workflow = NewWorkflow("rb");
        var created = new List<CheckpointMetadata>();
        foreach (var (state, type, phase) in steps.Length == 0
                     ? [(S1, CheckpointType.Auto, 1), (S2, CheckpointType.Auto, 1), (S3, CheckpointType.Auto, 1)]
                     : steps)
        {
            created.Add(await Client.CreateAsync(workflow, state, type: type, phase: phase));
        }
        return new History(workflow, created);
    }

    private static RollbackScope Scope(bool workflow = false, bool bus = false, ItemSelection? context = null, ItemSelection? artifacts = null,
        ItemSelection? agents = null) => new()
    {
        Workflow = workflow, MessageBusState = bus, Context = context, Artifacts = artifacts, AgentStates = agents,
    };

    private static ItemSelection All => new() { All = true };

    private static ItemSelection Keys(params string[] keys) => new() { Keys = { keys } };

    private static void AssertPhases(List<RollbackProgress> progress, params RollbackPhase[] expected)
    {
        var phases = new List<RollbackPhase>();
        foreach (var p in progress)
        {
            if (phases.Count == 0 || phases[^1] != p.Phase)
            {
                phases.Add(p.Phase);
            }
        }
        Assert.Equal(expected, phases);
        for (var i = 1; i < progress.Count; i++)
        {
            Assert.True(progress[i].Percent >= progress[i - 1].Percent, "percent went backwards");
        }
        Assert.All(progress, p => Assert.InRange(p.Percent, 0, 100));
        Assert.Equal(100, progress[^1].Percent);
    }

    /// <summary>Asserts the rollback wrote exactly one new head (a RECOVERY checkpoint after the previous head) with <paramref name="expected"/> state.</summary>
    private async Task<CheckpointMetadata> AssertNewHeadAsync(History history, RollbackResult result, CheckpointState expected, int newRows = 1)
    {
        Assert.Empty(result.Errors);
        Assert.False(result.DryRun);
        Assert.True(result.Verified);
        Assert.NotEmpty(result.NewHeadId);
        var head = await Client.GetAsync(result.NewHeadId);
        Assert.Equal(Canonical.Checksum(expected), head.Metadata.Checksum);
        AssertSameState(expected, head.State);
        Assert.Equal(CheckpointType.Recovery, head.Metadata.Type);
        Assert.Equal(history.Head.Sequence + newRows, head.Metadata.Sequence);
        var summary = await Client.WorkflowAsync(history.Workflow);
        Assert.Equal(result.NewHeadId, summary.HeadCheckpointId);
        Assert.Equal(history.Checkpoints.Count + newRows, await env.CountCheckpointsAsync(history.Workflow));
        var row = await env.WorkflowRowAsync(history.Workflow);
        Assert.Equal(Guid.Parse(result.NewHeadId), row!.Value.HeadId);
        return head.Metadata;
    }

    private async Task AssertNothingWrittenAsync(History history)
    {
        Assert.Equal(history.Checkpoints.Count, await env.CountCheckpointsAsync(history.Workflow));
        Assert.Equal(history.Head.Id, (await Client.WorkflowAsync(history.Workflow)).HeadCheckpointId);
        var row = await env.WorkflowRowAsync(history.Workflow);
        Assert.Equal((Guid.Parse(history.Head.Id), history.Head.Sequence), (row!.Value.HeadId!.Value, row.Value.HeadSequence));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Full_rollback_makes_the_targets_state_the_new_head_and_streams_its_phases_in_order()
    {
        var history = await HistoryAsync();
        var target = history.Checkpoints[0];

        var (progress, result) = await Client.RollbackAsync(Rollback(history.Workflow, target.Id));

        AssertPhases(progress, RollbackPhase.Validating, RollbackPhase.Rollback, RollbackPhase.Verify, RollbackPhase.Complete);
        Assert.Equal(target.Id, result.TargetCheckpointId);
        Assert.Equal(RollbackStrategy.Full, result.Strategy);
        Assert.Equal("", result.BackupCheckpointId);
        Assert.NotNull(result.Duration);
        var head = await AssertNewHeadAsync(history, result, S1);
        Assert.Equal(target.Checksum, head.Checksum);
        Assert.Equal(history.Head.Id, head.ParentId);

        // An unset strategy means FULL.
        var again = await Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[1].Id, RollbackStrategy.Unspecified));
        Assert.Equal(history.Checkpoints[1].Checksum, (await Client.GetAsync(again.Result.NewHeadId)).Metadata.Checksum);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Partial_rollback_of_the_context_restores_only_the_context()
    {
        var history = await HistoryAsync();

        var (_, result) = await Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[0].Id, RollbackStrategy.Partial, Scope(context: All)));

        var expected = S3.Clone();
        expected.Context = S1.Context;
        await AssertNewHeadAsync(history, result, expected);
        Assert.Equal(RollbackStrategy.Partial, result.Strategy);
        Assert.NotEmpty(result.Items);
        Assert.All(result.Items, item => Assert.Equal("context", item.Kind));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Partial_rollback_of_workflow_and_message_bus_restores_those_parts_whole()
    {
        var history = await HistoryAsync();

        var (_, result) = await Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[1].Id, RollbackStrategy.Partial,
            Scope(workflow: true, bus: true, agents: All)));

        var expected = S3.Clone();
        expected.Workflow = S2.Workflow.Clone();
        expected.MessageBusState = S2.MessageBusState.Clone();
        expected.AgentStates.Clear();
        expected.AgentStates.Add(S2.AgentStates);
        await AssertNewHeadAsync(history, result, expected);
        Assert.Equal(["agent_state", "message_bus_state", "workflow"], result.Items.Select(i => i.Kind).Distinct().Order());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Selective_rollback_restores_only_the_named_items_and_lists_their_versions()
    {
        var history = await HistoryAsync();

        var (_, result) = await Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[0].Id, RollbackStrategy.Selective,
            Scope(context: Keys("x", "z", "w"), artifacts: Keys("a1", "a3"), agents: Keys("planner"))));

        var expected = S3.Clone();
        expected.Context = """{"x":1,"y":"three","w":"only-in-1"}""";
        expected.Artifacts.Clear();
        expected.Artifacts.Add([Artifact("a1", 1), Artifact("a2", 2)]);
        expected.AgentStates["planner"] = """{"p":1}""";
        await AssertNewHeadAsync(history, result, expected);

        string V(string json) => Canonical.Version(Canonical.Json(json));
        var items = result.Items.Select(i => (i.Kind, i.Key, i.PreviousVersion, i.RestoredVersion)).OrderBy(i => i.Kind).ThenBy(i => i.Key).ToList();
        Assert.Equal(
        [
            ("agent_state", "planner", V("""{"p":3}"""), V("""{"p":1}""")),
            ("artifact", "a1", "3", "1"),
            ("artifact", "a3", "1", ""),
            ("context", "w", "", V("\"only-in-1\"")),
            ("context", "x", V("3"), V("1")),
            ("context", "z", V("\"only-in-3\""), ""),
        ], items);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Incremental_rollback_visits_every_checkpoint_from_the_head_back_to_the_target()
    {
        var s4 = S3.Clone();
        s4.Context = """{"x":4}""";
        var s5 = S3.Clone();
        s5.Context = """{"x":5}""";
        var history = await HistoryAsync((S1, CheckpointType.Auto, 1), (S2, CheckpointType.Auto, 1), (S3, CheckpointType.Auto, 1),
            (s4, CheckpointType.Auto, 1), (s5, CheckpointType.Auto, 1));
        var target = history.Checkpoints[1];

        var (progress, result) = await Client.RollbackAsync(Rollback(history.Workflow, target.Id, RollbackStrategy.Incremental, Scope(context: All)));

        var path = history.Checkpoints.Skip(1).Select(c => c.Id).Reverse().ToList(); // 5, 4, 3, 2
        var visited = result.VisitedIds.ToList();
        Assert.True(visited.SequenceEqual(path) || visited.SequenceEqual(path.Skip(1)), $"visited {string.Join(", ", visited)}");
        Assert.Equal(target.Id, visited[^1]);
        Assert.Equal(RollbackStrategy.Incremental, result.Strategy);
        var expected = s5.Clone();
        expected.Context = S2.Context;
        await AssertNewHeadAsync(history, result, expected);
        Assert.Equal(RollbackPhase.Complete, progress[^1].Phase);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_rollback_with_a_backup_saves_the_previous_head_as_a_recovery_checkpoint_first()
    {
        var history = await HistoryAsync();
        var request = Rollback(history.Workflow, history.Checkpoints[0].Id);
        request.CreateBackup = true;

        var (progress, result) = await Client.RollbackAsync(request);

        AssertPhases(progress, RollbackPhase.Validating, RollbackPhase.Backup, RollbackPhase.Rollback, RollbackPhase.Verify, RollbackPhase.Complete);
        Assert.NotEmpty(result.BackupCheckpointId);
        var backup = await Client.GetAsync(result.BackupCheckpointId);
        Assert.Equal(CheckpointType.Recovery, backup.Metadata.Type);
        Assert.Equal(history.Head.Checksum, backup.Metadata.Checksum);
        AssertSameState(S3, backup.State);
        Assert.Equal(history.Head.Sequence + 1, backup.Metadata.Sequence);
        var head = await AssertNewHeadAsync(history, result, S1, newRows: 2);
        Assert.Contains(head.ParentId, new[] { history.Head.Id, backup.Metadata.Id });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dry_run_reports_the_items_and_writes_nothing()
    {
        var history = await HistoryAsync();
        var request = Rollback(history.Workflow, history.Checkpoints[0].Id, RollbackStrategy.Selective, Scope(context: Keys("x"), artifacts: Keys("a1")));
        request.DryRun = true;
        request.CreateBackup = true;

        var (_, result) = await Client.RollbackAsync(request);

        Assert.True(result.DryRun);
        Assert.Equal("", result.NewHeadId);
        Assert.Equal("", result.BackupCheckpointId);
        Assert.Equal(history.Checkpoints[0].Id, result.TargetCheckpointId);
        Assert.Equal([("artifact", "a1", "3", "1"), ("context", "x", Canonical.Version("3"), Canonical.Version("1"))],
            result.Items.Select(i => (i.Kind, i.Key, i.PreviousVersion, i.RestoredVersion)).OrderBy(i => i.Kind));
        await AssertNothingWrittenAsync(history);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_invalidated_target_needs_force()
    {
        var history = await HistoryAsync();
        var target = history.Checkpoints[0];
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = target.Id, Reason = "bad" });

        await RefusedAsync(() => Client.RollbackAsync(Rollback(history.Workflow, target.Id)), StatusCode.FailedPrecondition);
        await AssertNothingWrittenAsync(history);

        var forced = Rollback(history.Workflow, target.Id);
        forced.Force = true;
        var (_, result) = await Client.RollbackAsync(forced);
        await AssertNewHeadAsync(history, result, S1);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Latest_valid_rolls_back_to_the_newest_valid_checkpoint()
    {
        var history = await HistoryAsync();
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = history.Head.Id, Reason = "bad last step" });

        var (_, result) = await Client.RollbackAsync(new RollbackRequest { WorkflowId = history.Workflow, LatestValid = true, Strategy = RollbackStrategy.Full });

        Assert.Equal(history.Checkpoints[1].Id, result.TargetCheckpointId);
        await AssertNewHeadAsync(history, result, S2);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Phase_start_rolls_back_to_the_newest_valid_phase_start_of_that_phase()
    {
        var s4 = S3.Clone();
        s4.Context = """{"x":4}""";
        var history = await HistoryAsync((S1, CheckpointType.PhaseStart, 1), (S2, CheckpointType.Auto, 1), (S3, CheckpointType.PhaseStart, 2),
            (s4, CheckpointType.Auto, 2));

        var (_, result) = await Client.RollbackAsync(new RollbackRequest { WorkflowId = history.Workflow, PhaseStart = 1 });
        Assert.Equal(history.Checkpoints[0].Id, result.TargetCheckpointId);
        await AssertNewHeadAsync(history, result, S1);

        var second = await Client.RollbackAsync(new RollbackRequest { WorkflowId = history.Workflow, PhaseStart = 2 });
        Assert.Equal(history.Checkpoints[2].Id, second.Result.TargetCheckpointId);
        Assert.Equal(history.Checkpoints[2].Checksum, (await Client.GetAsync(second.Result.NewHeadId)).Metadata.Checksum);

        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.RollbackAsync(new RollbackRequest { WorkflowId = history.Workflow, PhaseStart = 7 }));
        Assert.Contains(ex.StatusCode, new[] { StatusCode.NotFound, StatusCode.FailedPrecondition });
        Assert.Equal(6, await env.CountCheckpointsAsync(history.Workflow));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_target_of_another_workflow_is_an_invalid_checkpoint_id_and_writes_nothing()
    {
        var history = await HistoryAsync();
        var other = await HistoryAsync();

        var status = await RefusedAsync(() => Client.RollbackAsync(Rollback(history.Workflow, other.Checkpoints[0].Id)), StatusCode.InvalidArgument);

        AssertViolation(status, "checkpoint_id");
        await AssertNothingWrittenAsync(history);
        await AssertNothingWrittenAsync(other);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_expected_head_that_moved_is_refused_with_head_moved()
    {
        var history = await HistoryAsync();
        var request = Rollback(history.Workflow, history.Checkpoints[0].Id);
        request.ExpectedHeadId = history.Checkpoints[1].Id;

        var status = await RefusedAsync(() => Client.RollbackAsync(request), StatusCode.Aborted);

        Assert.Equal("HEAD_MOVED", status.ErrorInfo().Reason);
        Assert.Equal(history.Head.Id, status.ErrorInfo().Metadata["current_head_id"]);
        await AssertNothingWrittenAsync(history);

        request.ExpectedHeadId = history.Head.Id;
        var (_, result) = await Client.RollbackAsync(request);
        await AssertNewHeadAsync(history, result, S1);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_rollback_that_cannot_commit_in_time_is_deadline_exceeded_and_changes_nothing()
    {
        var history = await HistoryAsync();
        var request = Rollback(history.Workflow, history.Checkpoints[0].Id);
        request.CreateBackup = true;
        request.Timeout = new Duration { Nanos = 1_000 };

        await RefusedAsync(() => Client.RollbackAsync(request), StatusCode.DeadlineExceeded);

        await AssertNothingWrittenAsync(history);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_rollback_to_a_state_equal_to_the_head_writes_no_new_head()
    {
        var history = await HistoryAsync((S1, CheckpointType.Auto, 1), (S2, CheckpointType.Auto, 1), (S1, CheckpointType.Auto, 1));

        var (_, result) = await Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[0].Id));

        Assert.Empty(result.Errors);
        Assert.Equal("", result.NewHeadId);
        await AssertNothingWrittenAsync(history);
    }

    /// <summary>
    /// Through the API a workflow's history is a line (a rollback's backup and new head follow the
    /// previous head), so every checkpoint is an ancestor of the head. A history whose parent links do not
    /// lead back to the target (here: a link cut in the store) must be refused, not walked past.
    /// </summary>
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Incremental_rollback_to_a_checkpoint_that_is_not_an_ancestor_of_the_head_is_refused()
    {
        var history = await HistoryAsync();
        var request = Rollback(history.Workflow, history.Checkpoints[0].Id);
        request.CreateBackup = true;
        var (_, result) = await Client.RollbackAsync(request);

        // The line: new head → backup → 3 → 2 → 1.
        var stored = await env.StoredAsync(history.Workflow);
        var byId = stored.ToDictionary(s => s.Id);
        var line = new List<string>();
        for (var id = result.NewHeadId; id.Length > 0; id = byId[id].ParentId)
        {
            line.Add(id);
        }
        Assert.Equal(stored.Select(s => s.Id).Reverse(), line);

        await env.ExecuteAsync("UPDATE checkpoints SET parent_id = NULL WHERE id = @id", ("id", Guid.Parse(history.Checkpoints[1].Id)));
        var status = await RefusedAsync(
            () => Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[0].Id, RollbackStrategy.Incremental, Scope(context: All))),
            StatusCode.FailedPrecondition);

        Assert.Equal("TARGET_NOT_ANCESTOR", status.ErrorInfo().Reason);
        Assert.Equal(stored.Count, await env.CountCheckpointsAsync(history.Workflow));
        Assert.Equal(result.NewHeadId, (await Client.WorkflowAsync(history.Workflow)).HeadCheckpointId);

        // A non-incremental rollback does not walk the links: it still reaches the target.
        var (_, full) = await Client.RollbackAsync(Rollback(history.Workflow, history.Checkpoints[0].Id, RollbackStrategy.Partial, Scope(context: All)));
        Assert.Equal(history.Checkpoints[0].Id, full.TargetCheckpointId);
    }
}
