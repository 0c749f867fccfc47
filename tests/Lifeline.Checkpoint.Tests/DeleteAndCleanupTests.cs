using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>Deleting and cleaning up checkpoints rewrites what depended on them: every remaining checkpoint still reconstructs.</summary>
public sealed class DeleteAndCleanupTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private CheckpointService.CheckpointServiceClient Client => env.Checkpoint.Checkpoints();

    private sealed record Series(string Workflow, List<CheckpointState> States, List<CheckpointMetadata> Created)
    {
        public CheckpointState StateOf(string id) => States[Created.FindIndex(c => c.Id == id)];
    }

    /// <summary><paramref name="count"/> checkpoints of a ~50 KiB context changing 1% each (deltas after the first).</summary>
    private async Task<Series> WriteSeriesAsync(int count, int seed, Func<int, CheckpointType>? typeOf = null, TimeSpan? pause = null)
    {
        var workflow = NewWorkflow("del");
        var random = new Random(seed);
        var context = LargeContext(random, keys: 256, valueLength: 200);
        var states = new List<CheckpointState>();
        var created = new List<CheckpointMetadata>();
        for (var i = 0; i < count; i++)
        {
            if (i > 0)
            {
                Mutate(random, context);
                if (pause is { } p)
                {
                    await Task.Delay(p);
                }
            }
            var state = StateWithContext(context, phase: i);
            states.Add(state);
            created.Add(await Client.CreateAsync(workflow, state, name: $"step {i + 1}", type: typeOf?.Invoke(i + 1) ?? CheckpointType.Auto, phase: 1));
        }
        return new Series(workflow, states, created);
    }

    /// <summary>Every remaining row reconstructs to its own state, and no row points at a missing parent or base.</summary>
    private async Task AssertRemainingReconstructAsync(Series series)
    {
        var stored = await env.StoredAsync(series.Workflow);
        var ids = stored.Select(s => s.Id).ToHashSet();
        foreach (var row in stored)
        {
            Assert.True(row.BaseId.Length == 0 || ids.Contains(row.BaseId), $"{row.Sequence} is a delta against a missing checkpoint");
            Assert.True(row.ParentId.Length == 0 || ids.Contains(row.ParentId), $"{row.Sequence} has a missing parent");
            Assert.Equal(row.IsDelta, row.BaseId.Length > 0);
            var checkpoint = await Client.GetAsync(row.Id);
            var expected = series.StateOf(row.Id);
            Assert.Equal(Canonical.Checksum(expected), checkpoint.Metadata.Checksum);
            Assert.Equal(Canonical.Checksum(expected), Canonical.Checksum(checkpoint.State));
        }
        var summary = await Client.WorkflowAsync(series.Workflow);
        Assert.Equal(stored.Count, summary.CheckpointCount);
        Assert.Equal(stored.Sum(s => s.StoredBytes), summary.StoredBytes);
        var row0 = await env.WorkflowRowAsync(series.Workflow);
        Assert.Equal(stored.Count, row0!.Value.CheckpointCount);
        Assert.Equal(Guid.Parse(series.Created[^1].Id), row0.Value.HeadId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Deleting_a_delta_base_rewrites_its_dependents_and_reparents_its_children()
    {
        var series = await WriteSeriesAsync(6, seed: 10);
        var before = await env.StoredAsync(series.Workflow);
        Assert.True(before[3].IsDelta && before[3].BaseId == before[2].Id, "checkpoint 4 should be a delta against 3");
        var deleted = series.Created[2];

        var response = await Client.DeleteCheckpointAsync(new DeleteCheckpointRequest { CheckpointId = deleted.Id });

        Assert.Equal([series.Created[3].Id], response.ReparentedIds);
        Assert.Equal([series.Created[3].Id], response.RewrittenIds);
        await RefusedAsync(() => Client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = deleted.Id }).ResponseAsync, StatusCode.NotFound);
        var after = await env.StoredAsync(series.Workflow);
        Assert.Equal(5, after.Count);
        Assert.DoesNotContain(after, s => s.Id == deleted.Id || s.BaseId == deleted.Id || s.ParentId == deleted.Id);
        var child = after.Single(s => s.Id == series.Created[3].Id);
        Assert.Equal(series.Created[1].Id, child.ParentId);
        Assert.Equal(4, child.Sequence); // positions do not move
        Assert.Equal(series.Created[1].Id, (await Client.GetAsync(child.Id)).Metadata.ParentId);
        // The checkpoints that were not deltas against it are untouched.
        foreach (var untouched in new[] { 0, 1, 4, 5 })
        {
            var was = before[untouched];
            var now = after.Single(s => s.Id == was.Id);
            Assert.Equal((was.StorageKind, was.BaseId, was.StoredBytes), (now.StorageKind, now.BaseId, now.StoredBytes));
        }
        await AssertRemainingReconstructAsync(series with { Created = series.Created.Where(c => c.Id != deleted.Id).ToList(), States = series.States.Where((_, i) => i != 2).ToList() });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Deleting_the_first_full_snapshot_leaves_its_child_without_a_parent_and_still_reconstructing()
    {
        var series = await WriteSeriesAsync(4, seed: 11);
        var response = await Client.DeleteCheckpointAsync(new DeleteCheckpointRequest { CheckpointId = series.Created[0].Id });

        Assert.Equal([series.Created[1].Id], response.ReparentedIds);
        Assert.Contains(series.Created[1].Id, response.RewrittenIds);
        var after = await env.StoredAsync(series.Workflow);
        Assert.Equal(3, after.Count);
        Assert.Equal("", after[0].ParentId);
        Assert.Equal("", (await Client.GetAsync(series.Created[1].Id)).Metadata.ParentId);
        await AssertRemainingReconstructAsync(series with { Created = series.Created.Skip(1).ToList(), States = series.States.Skip(1).ToList() });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_head_cannot_be_deleted()
    {
        var series = await WriteSeriesAsync(2, seed: 12);
        var status = await RefusedAsync(
            () => Client.DeleteCheckpointAsync(new DeleteCheckpointRequest { CheckpointId = series.Created[1].Id }).ResponseAsync, StatusCode.FailedPrecondition);

        Assert.Equal("CHECKPOINT_IS_HEAD", status.ErrorInfo().Reason);
        Assert.Equal(2, await env.CountCheckpointsAsync(series.Workflow));
        Assert.Equal(series.Created[1].Id, (await Client.WorkflowAsync(series.Workflow)).HeadCheckpointId);
        await AssertRemainingReconstructAsync(series);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cleanup_keep_last_removes_the_oldest_and_rewrites_the_deltas_that_depended_on_them()
    {
        var series = await WriteSeriesAsync(10, seed: 13);
        var before = await env.StoredAsync(series.Workflow);

        var response = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = series.Workflow, KeepLast = 3 });

        Assert.Equal(7, response.RemovedCount);
        Assert.Equal(series.Created.Take(7).Select(c => c.Id).Order(), response.RemovedIds.Order());
        Assert.Contains(series.Created[7].Id, response.RewrittenIds); // it was a delta against a removed checkpoint
        Assert.All(response.RewrittenIds, id => Assert.Contains(id, series.Created.Skip(7).Select(c => c.Id)));
        Assert.True(response.FreedBytes > 0);
        var after = await env.StoredAsync(series.Workflow);
        Assert.Equal(series.Created.Skip(7).Select(c => c.Id), after.Select(s => s.Id));
        Assert.True(before.Sum(s => s.StoredBytes) > after.Sum(s => s.StoredBytes));
        await AssertRemainingReconstructAsync(series);

        // Nothing left to remove: a second run removes nothing.
        var again = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = series.Workflow, KeepLast = 3 });
        Assert.Equal(0, again.RemovedCount);
        Assert.Equal(3, await env.CountCheckpointsAsync(series.Workflow));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cleanup_dry_run_reports_what_a_real_run_removes_and_changes_nothing()
    {
        var series = await WriteSeriesAsync(6, seed: 14);
        var before = await env.StoredAsync(series.Workflow);

        var dry = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = series.Workflow, KeepLast = 2, DryRun = true });

        Assert.Equal(4, dry.RemovedCount);
        Assert.Equal(series.Created.Take(4).Select(c => c.Id).Order(), dry.RemovedIds.Order());
        Assert.Equal(before, await env.StoredAsync(series.Workflow)); // same rows, same storage, byte counts and validity
        Assert.Equal(6, (await Client.WorkflowAsync(series.Workflow)).CheckpointCount);

        var real = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = series.Workflow, KeepLast = 2 });
        Assert.Equal(dry.RemovedIds.Order(), real.RemovedIds.Order());
        Assert.Equal(dry.RemovedCount, real.RemovedCount);
        Assert.Equal(2, await env.CountCheckpointsAsync(series.Workflow));
        await AssertRemainingReconstructAsync(series);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cleanup_keeps_phase_endpoints_when_asked()
    {
        // 1 PHASE_START, 2-3 AUTO, 4 PHASE_END, 5 PHASE_START, 6-8 AUTO (8 is the head).
        CheckpointType TypeOf(int n) => n switch
        {
            1 or 5 => CheckpointType.PhaseStart,
            4 => CheckpointType.PhaseEnd,
            _ => CheckpointType.Auto,
        };
        var series = await WriteSeriesAsync(8, seed: 15, TypeOf);

        var response = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = series.Workflow, KeepLast = 1, KeepPhaseEndpoints = true });

        int[] removed = [2, 3, 6, 7];
        Assert.Equal(removed.Length, response.RemovedCount);
        Assert.Equal(removed.Select(n => series.Created[n - 1].Id).Order(), response.RemovedIds.Order());
        var after = await env.StoredAsync(series.Workflow);
        Assert.Equal(new long[] { 1, 4, 5, 8 }, after.Select(s => s.Sequence));
        await AssertRemainingReconstructAsync(series);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cleanup_older_than_removes_only_older_checkpoints_and_never_the_head()
    {
        var series = await WriteSeriesAsync(6, seed: 16, pause: TimeSpan.FromMilliseconds(30));

        var older = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = series.Workflow, OlderThan = series.Created[3].CreatedAt });
        Assert.Equal(3, older.RemovedCount);
        Assert.Equal(series.Created.Take(3).Select(c => c.Id).Order(), older.RemovedIds.Order());
        Assert.Equal(new long[] { 4, 5, 6 }, (await env.StoredAsync(series.Workflow)).Select(s => s.Sequence));
        await AssertRemainingReconstructAsync(series);

        // Everything is older than tomorrow, but the head stays.
        var all = await Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest
        {
            WorkflowId = series.Workflow, OlderThan = Timestamp.FromDateTime(DateTime.UtcNow.AddDays(1)),
        });
        Assert.Equal(2, all.RemovedCount);
        Assert.DoesNotContain(series.Created[5].Id, all.RemovedIds);
        var left = await env.StoredAsync(series.Workflow);
        Assert.Equal([series.Created[5].Id], left.Select(s => s.Id));
        Assert.True(left[0].IsFull, "the only checkpoint left must be a full snapshot");
        await AssertRemainingReconstructAsync(series);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_maintenance_loop_bounds_history_keeping_phase_endpoints_and_the_head()
    {
        await using var host = await env.StartCheckpointAsync(new Dictionary<string, string?>
        {
            ["Checkpoint:RetentionKeepLast"] = "3",
            ["Checkpoint:MaintenanceInterval"] = "00:00:00.200",
        });
        var client = host.Checkpoints();
        var workflow = NewWorkflow("retention");
        var random = new Random(17);
        var context = LargeContext(random, keys: 128, valueLength: 200);
        var states = new List<CheckpointState>();
        var created = new List<CheckpointMetadata>();
        for (var i = 1; i <= 9; i++)
        {
            Mutate(random, context);
            var state = StateWithContext(context, phase: i);
            states.Add(state);
            created.Add(await client.CreateAsync(workflow, state, type: i == 2 ? CheckpointType.PhaseStart : CheckpointType.Auto));
        }

        var bounded = await EventuallyAsync(async () => await env.CountCheckpointsAsync(workflow) == 4, TimeSpan.FromSeconds(15));
        Assert.True(bounded, $"{await env.CountCheckpointsAsync(workflow)} checkpoints left, expected 4");
        Assert.Equal(new long[] { 2, 7, 8, 9 }, (await env.StoredAsync(workflow)).Select(s => s.Sequence));
        await AssertRemainingReconstructAsync(new Series(workflow, states, created));
    }
}
