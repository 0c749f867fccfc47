using Grpc.Core;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>Corrupt state is never returned: reads verify checksums, report DATA_LOSS naming the checkpoint, and GetLatest falls back.</summary>
public sealed class CorruptionTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private CheckpointService.CheckpointServiceClient Client => env.Checkpoint.Checkpoints();

    private static void AssertCorrupted(Google.Rpc.Status status, params string[] anyOfIds)
    {
        var info = status.ErrorInfo();
        Assert.Equal("CHECKPOINT_CORRUPTED", info.Reason);
        var named = anyOfIds.Any(id => status.Message.Contains(id, StringComparison.Ordinal) || info.Metadata.Values.Contains(id));
        Assert.True(named, $"the refusal names none of {string.Join(", ", anyOfIds)}: {status.Message} {info.Metadata}");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_flipped_byte_is_data_loss_and_get_latest_falls_back_to_the_previous_intact_checkpoint()
    {
        var workflow = NewWorkflow("rot");
        var first = await Client.CreateAsync(workflow, SmallState(1));
        var second = await Client.CreateAsync(workflow, SmallState(2));
        var third = await Client.CreateAsync(workflow, SmallState(3));
        await env.CorruptPayloadAsync(third.Id);

        var status = await RefusedAsync(() => Client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = third.Id }).ResponseAsync, StatusCode.DataLoss);
        AssertCorrupted(status, third.Id);

        var latest = await Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow });
        Assert.Equal(second.Id, latest.Checkpoint.Metadata.Id);
        AssertSameState(SmallState(2), latest.Checkpoint.State);
        var skipped = Assert.Single(latest.SkippedCorrupt);
        Assert.Equal((third.Id, 3L), (skipped.CheckpointId, skipped.Sequence));
        Assert.NotEmpty(skipped.Reason);

        // The intact ones still read; the corrupt row is still there (nothing deleted behind the caller's back).
        AssertSameState(SmallState(1), (await Client.GetAsync(first.Id)).State);
        Assert.Equal(3, await env.CountCheckpointsAsync(workflow));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_instance_that_never_cached_the_state_also_reports_the_corruption()
    {
        var workflow = NewWorkflow("rot-fresh");
        await Client.CreateAsync(workflow, SmallState(1));
        var second = await Client.CreateAsync(workflow, SmallState(2));
        await env.CorruptPayloadAsync(second.Id, offset: 5);

        await using var fresh = await env.StartCheckpointAsync();
        var status = await RefusedAsync(
            () => fresh.Checkpoints().GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = second.Id }).ResponseAsync, StatusCode.DataLoss);
        AssertCorrupted(status, second.Id);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_corrupt_full_snapshot_makes_every_delta_built_on_it_data_loss_never_wrong_state()
    {
        var workflow = NewWorkflow("rot-base");
        var random = new Random(21);
        var context = LargeContext(random, keys: 256, valueLength: 200);
        var created = new List<CheckpointMetadata>();
        for (var i = 0; i < 4; i++)
        {
            if (i > 0)
            {
                Mutate(random, context);
            }
            created.Add(await Client.CreateAsync(workflow, StateWithContext(context, i)));
        }
        var stored = await env.StoredAsync(workflow);
        Assert.True(stored[0].IsFull && stored.Skip(1).All(s => s.IsDelta), "expected one full snapshot and three deltas");

        await env.CorruptPayloadAsync(created[0].Id, offset: 100);

        foreach (var checkpoint in created)
        {
            var status = await RefusedAsync(
                () => Client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = checkpoint.Id }).ResponseAsync, StatusCode.DataLoss);
            AssertCorrupted(status, checkpoint.Id, created[0].Id);
        }
        // Every valid checkpoint is corrupt: DATA_LOSS naming them, not NOT_FOUND (there is state; it is damaged).
        var none = await RefusedAsync(() => Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.DataLoss);
        Assert.Equal("NO_INTACT_CHECKPOINT", none.GetDetail<Google.Rpc.ErrorInfo>()!.Reason);

        // A rollback to a corrupt target is refused even with force, and writes nothing.
        var request = Rollback(workflow, created[1].Id);
        request.Force = true;
        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.RollbackAsync(request));
        Assert.NotEqual(StatusCode.OK, ex.StatusCode);
        Assert.Equal(4, await env.CountCheckpointsAsync(workflow));
        Assert.Equal(created[3].Id, (await Client.WorkflowAsync(workflow)).HeadCheckpointId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Get_latest_skips_invalidated_checkpoints_without_calling_them_corrupt()
    {
        var workflow = NewWorkflow("invalid");
        var first = await Client.CreateAsync(workflow, SmallState(1));
        var second = await Client.CreateAsync(workflow, SmallState(2));
        var third = await Client.CreateAsync(workflow, SmallState(3));
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = third.Id, Reason = "bad step" });
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = second.Id, Reason = "bad step" });

        var latest = await Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow });
        Assert.Equal(first.Id, latest.Checkpoint.Metadata.Id);
        Assert.Empty(latest.SkippedCorrupt);

        // Invalid and corrupt: a corrupt valid checkpoint is listed, invalid ones are not.
        var fourth = await Client.CreateAsync(workflow, SmallState(4));
        await env.CorruptPayloadAsync(fourth.Id);
        latest = await Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow });
        Assert.Equal(first.Id, latest.Checkpoint.Metadata.Id);
        Assert.Equal([fourth.Id], latest.SkippedCorrupt.Select(s => s.CheckpointId));

        // The only valid one left is corrupt: DATA_LOSS NO_INTACT_CHECKPOINT naming it.
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = first.Id, Reason = "bad too" });
        var none = await RefusedAsync(() => Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.DataLoss);
        Assert.Equal(fourth.Id, none.GetDetail<Google.Rpc.ErrorInfo>()!.Metadata["corrupt_checkpoint_ids"]);

        // No valid checkpoint at all: NOT_FOUND.
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = fourth.Id, Reason = "corrupt" });
        await RefusedAsync(() => Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_tampered_checksum_column_is_caught_as_corruption()
    {
        var workflow = NewWorkflow("tamper");
        var first = await Client.CreateAsync(workflow, SmallState(1));
        var second = await Client.CreateAsync(workflow, SmallState(2));
        await env.ExecuteAsync("UPDATE checkpoints SET checksum = @c WHERE id = @id",
            ("c", new string('0', 64)), ("id", Guid.Parse(second.Id)));

        await using var fresh = await env.StartCheckpointAsync();
        var status = await RefusedAsync(
            () => fresh.Checkpoints().GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = second.Id }).ResponseAsync, StatusCode.DataLoss);
        AssertCorrupted(status, second.Id);
        var latest = await fresh.Checkpoints().GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow });
        Assert.Equal(first.Id, latest.Checkpoint.Metadata.Id);
    }
}
