using Grpc.Core;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>Optimistic concurrency on the head: one writer per parent wins, the other is told the new head; nothing is lost.</summary>
public sealed class ConcurrencyTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private static async Task<(CheckpointMetadata? Created, RpcException? Refused)> TryCreateAsync(
        CheckpointService.CheckpointServiceClient client, string workflow, CheckpointState state, string parentId)
    {
        try
        {
            return (await client.CreateAsync(workflow, state, parentId: parentId), null);
        }
        catch (RpcException ex)
        {
            return (null, ex);
        }
    }

    private async Task RaceOnTheHeadAsync(CheckpointService.CheckpointServiceClient a, CheckpointService.CheckpointServiceClient b, int rounds)
    {
        var workflow = NewWorkflow("race");
        var head = await a.CreateAsync(workflow, SmallState(0));
        var successes = 1;
        for (var round = 1; round <= rounds; round++)
        {
            var results = await Task.WhenAll(
                TryCreateAsync(a, workflow, SmallState(round * 10 + 1), head.Id),
                TryCreateAsync(b, workflow, SmallState(round * 10 + 2), head.Id));

            var won = results.Where(r => r.Created is not null).ToList();
            var lost = results.Where(r => r.Refused is not null).ToList();
            Assert.True(won.Count == 1, $"round {round}: {won.Count} winners; refusals: {string.Join("; ", lost.Select(l => l.Refused!.Status))}");
            var winner = won[0].Created!;
            Assert.Equal(head.Id, winner.ParentId);
            successes++;

            var refused = lost[0].Refused!;
            Assert.Equal(StatusCode.Aborted, refused.StatusCode);
            var info = refused.GetRpcStatus()!.ErrorInfo();
            Assert.Equal("HEAD_MOVED", info.Reason);
            Assert.Equal(winner.Id, info.Metadata["current_head_id"]);
            Assert.Equal(successes, await env.CountCheckpointsAsync(workflow)); // the loser wrote nothing

            // The loser reads the new head, merges, and retries on it.
            var loserClient = results[0].Refused is not null ? a : b;
            var retry = await loserClient.CreateAsync(workflow, SmallState(round * 10 + 3), parentId: info.Metadata["current_head_id"]);
            Assert.Equal(winner.Id, retry.ParentId);
            successes++;
            head = retry;
        }

        Assert.Equal(successes, await env.CountCheckpointsAsync(workflow));
        var summary = await a.WorkflowAsync(workflow);
        Assert.Equal((head.Id, (long)successes, (long)successes), (summary.HeadCheckpointId, summary.HeadSequence, summary.CheckpointCount));
        AssertLinear(await env.StoredAsync(workflow), successes);
    }

    private static void AssertLinear(List<StoredCheckpoint> stored, int expected)
    {
        Assert.Equal(expected, stored.Count);
        Assert.Equal(Enumerable.Range(1, expected).Select(n => (long)n), stored.Select(s => s.Sequence));
        Assert.Equal("", stored[0].ParentId);
        for (var i = 1; i < stored.Count; i++)
        {
            Assert.Equal(stored[i - 1].Id, stored[i].ParentId);
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Two_writers_on_the_same_parent_one_wins_the_other_gets_head_moved_and_its_retry_succeeds()
    {
        var client = env.Checkpoint.Checkpoints();
        await RaceOnTheHeadAsync(client, client, rounds: 25);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Two_writers_on_two_instances_race_on_the_same_parent_without_losing_a_checkpoint()
    {
        await using var second = await env.StartCheckpointAsync();
        await RaceOnTheHeadAsync(env.Checkpoint.Checkpoints(), second.Checkpoints(), rounds: 25);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_stale_parent_is_refused_with_head_moved_and_writes_nothing()
    {
        var client = env.Checkpoint.Checkpoints();
        var workflow = NewWorkflow("stale");
        var first = await client.CreateAsync(workflow, SmallState(1));
        var second = await client.CreateAsync(workflow, SmallState(2));

        var status = await RefusedAsync(() => client.CreateCheckpointAsync(Create(workflow, SmallState(3), parentId: first.Id)).ResponseAsync, StatusCode.Aborted);

        Assert.Equal("HEAD_MOVED", status.ErrorInfo().Reason);
        Assert.Equal(second.Id, status.ErrorInfo().Metadata["current_head_id"]);
        Assert.Equal(2, await env.CountCheckpointsAsync(workflow));
        Assert.Equal(second.Id, (await client.WorkflowAsync(workflow)).HeadCheckpointId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Writers_without_a_parent_all_succeed_on_a_linear_chain_across_two_instances()
    {
        await using var second = await env.StartCheckpointAsync();
        var clients = new[] { env.Checkpoint.Checkpoints(), second.Checkpoints() };
        var workflow = NewWorkflow("linear");
        const int writers = 8, each = 10;

        var created = await Task.WhenAll(Enumerable.Range(0, writers).Select(async w =>
        {
            var mine = new List<CheckpointMetadata>();
            for (var i = 0; i < each; i++)
            {
                mine.Add(await clients[w % 2].CreateAsync(workflow, SmallState(w * 100 + i)));
            }
            return mine;
        }));

        var all = created.SelectMany(c => c).ToList();
        Assert.Equal(writers * each, all.Count);
        Assert.Equal(Enumerable.Range(1, writers * each).Select(n => (long)n), all.Select(c => c.Sequence).Order());
        var stored = await env.StoredAsync(workflow);
        AssertLinear(stored, writers * each);
        // Each reply told the truth about its parent.
        var bySequence = stored.ToDictionary(s => s.Sequence);
        Assert.All(all, c => Assert.Equal(bySequence[c.Sequence].Id, c.Id));
        Assert.All(all, c => Assert.Equal(c.Sequence == 1 ? "" : bySequence[c.Sequence - 1].Id, c.ParentId));
        var summary = await clients[0].WorkflowAsync(workflow);
        Assert.Equal((stored[^1].Id, (long)(writers * each)), (summary.HeadCheckpointId, summary.HeadSequence));
    }
}
