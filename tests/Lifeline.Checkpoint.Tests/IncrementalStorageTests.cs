using System.Text.Json;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>
/// Checkpoints are stored as compressed deltas when that is smaller, with a full snapshot at least every
/// <c>MaxDeltaChain</c> deltas, and every one of them reconstructs to its checksum.
/// </summary>
public sealed class IncrementalStorageTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    /// <summary>Writes <paramref name="count"/> checkpoints, each changing 1% of a ~256 KiB context; returns the states sent and the replies.</summary>
    private static async Task<(List<CheckpointState> States, List<CheckpointMetadata> Created)> WriteSeriesAsync(
        CheckpointService.CheckpointServiceClient client, string workflow, int count, int seed)
    {
        var random = new Random(seed);
        var context = LargeContext(random);
        var states = new List<CheckpointState>();
        var created = new List<CheckpointMetadata>();
        for (var i = 0; i < count; i++)
        {
            if (i > 0)
            {
                Mutate(random, context);
            }
            var state = StateWithContext(context, phase: i);
            states.Add(state);
            created.Add(await client.CreateAsync(workflow, state, name: $"step {i + 1}"));
        }
        return (states, created);
    }

    private static async Task AssertEveryCheckpointReconstructsAsync(
        CheckpointService.CheckpointServiceClient client, List<CheckpointState> states, List<CheckpointMetadata> created)
    {
        for (var i = 0; i < created.Count; i++)
        {
            var checkpoint = await client.GetAsync(created[i].Id);
            Assert.Equal(Canonical.Checksum(states[i]), checkpoint.Metadata.Checksum);
            Assert.Equal(Canonical.Checksum(states[i]), Canonical.Checksum(checkpoint.State));
            Assert.Equal(Canonical.Json(states[i].Context), Canonical.Json(checkpoint.State.Context));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Small_changes_to_a_large_state_are_stored_as_small_deltas_that_reconstruct_exactly()
    {
        var workflow = NewWorkflow("delta");
        var client = env.Checkpoint.Checkpoints();
        var (states, created) = await WriteSeriesAsync(client, workflow, 40, seed: 1);

        var stored = await env.StoredAsync(workflow);
        Assert.Equal(40, stored.Count);
        Assert.True(stored[0].IsFull);
        Assert.Equal(0, stored[0].ChainDepth);
        var deltas = stored.Where(s => s.IsDelta).ToList();
        Assert.True(deltas.Count >= 35, $"only {deltas.Count} of 40 stored as deltas");
        foreach (var delta in deltas)
        {
            // A delta of ~1% of the state: far below the state's size and far below a full snapshot.
            Assert.True(delta.StoredBytes * 10 < delta.SizeBytes, $"delta {delta.Sequence}: {delta.StoredBytes} stored for {delta.SizeBytes}");
            Assert.True(delta.StoredBytes * 5 < stored[0].StoredBytes, $"delta {delta.Sequence}: {delta.StoredBytes} vs full {stored[0].StoredBytes}");
            Assert.True(delta.ChainDepth is >= 1 and <= 32);
            // Against its parent, one step further from the full snapshot than its base.
            Assert.Equal(delta.ParentId, delta.BaseId);
            Assert.Equal(stored.Single(s => s.Id == delta.BaseId).ChainDepth + 1, delta.ChainDepth);
        }
        Assert.All(stored.Where(s => s.IsFull), s => Assert.Equal((0, ""), (s.ChainDepth, s.BaseId)));
        Assert.All(stored, s => Assert.Equal(s.StoredBytes, s.PayloadBytes));
        Assert.Equal(created.Select(c => (c.Id, c.StoredBytes, c.ChainDepth, (int)c.StorageKind)),
            stored.Select(s => (s.Id, s.StoredBytes, s.ChainDepth, s.StorageKind)));

        var summary = await client.WorkflowAsync(workflow);
        Assert.Equal(stored.Sum(s => s.StoredBytes), summary.StoredBytes);
        Assert.Equal(stored.Sum(s => s.SizeBytes), summary.StateBytes);
        Assert.True(summary.StoredBytes * 5 < summary.StateBytes, $"{summary.StoredBytes} stored for {summary.StateBytes} of states");

        await AssertEveryCheckpointReconstructsAsync(client, states, created);

        // An instance that never saw them (no cached states) reconstructs them from the store alone.
        await using var fresh = await env.StartCheckpointAsync();
        await AssertEveryCheckpointReconstructsAsync(fresh.Checkpoints(), states, created);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_bounded_delta_chain_takes_a_full_snapshot_at_least_every_max_plus_one_checkpoints()
    {
        const int maxChain = 5;
        await using var host = await env.StartCheckpointAsync(new Dictionary<string, string?> { ["Checkpoint:MaxDeltaChain"] = maxChain.ToString() });
        var client = host.Checkpoints();
        var workflow = NewWorkflow("chain5");
        var (states, created) = await WriteSeriesAsync(client, workflow, 40, seed: 2);

        var stored = await env.StoredAsync(workflow);
        Assert.All(stored, s => Assert.InRange(s.ChainDepth, 0, maxChain));
        Assert.All(stored, s => Assert.Equal(s.IsFull, s.ChainDepth == 0));
        for (var i = 0; i + maxChain + 1 <= stored.Count; i++)
        {
            Assert.Contains(stored.Skip(i).Take(maxChain + 1), s => s.IsFull);
        }
        // Still mostly deltas: one full snapshot per chain.
        Assert.True(stored.Count(s => s.IsDelta) >= 40 - 40 / (maxChain + 1) - 2, $"{stored.Count(s => s.IsDelta)} deltas of 40");

        await AssertEveryCheckpointReconstructsAsync(client, states, created);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task With_max_delta_chain_zero_every_checkpoint_is_a_full_snapshot()
    {
        await using var host = await env.StartCheckpointAsync(new Dictionary<string, string?> { ["Checkpoint:MaxDeltaChain"] = "0" });
        var client = host.Checkpoints();
        var workflow = NewWorkflow("full");
        var (states, created) = await WriteSeriesAsync(client, workflow, 8, seed: 3);

        var stored = await env.StoredAsync(workflow);
        Assert.Equal(8, stored.Count);
        Assert.All(stored, s => Assert.Equal(((int)StorageKind.Full, 0, ""), (s.StorageKind, s.ChainDepth, s.BaseId)));
        Assert.All(created, c => Assert.Equal(StorageKind.Full, c.StorageKind));
        // Compressed all the same: the random text uses 62 symbols, so well under 8 bits each.
        Assert.All(stored, s => Assert.True(s.StoredBytes < s.SizeBytes, $"{s.StoredBytes} stored for {s.SizeBytes}"));
        await AssertEveryCheckpointReconstructsAsync(client, states, created);
    }

    /// <summary>
    /// A delta is used only when it is smaller than the compressed full state. A rewrite of the whole
    /// context still shares the state's envelope (the part names, workflow, message bus), so its delta
    /// may beat the full snapshot by a few bytes; what must hold is that it never costs more than one.
    /// The full size is measured on an instance that stores every checkpoint full.
    /// </summary>
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_checkpoint_that_rewrites_everything_is_never_stored_larger_than_a_full_snapshot()
    {
        var workflow = NewWorkflow("rewrite");
        var client = env.Checkpoint.Checkpoints();
        var (states, created) = await WriteSeriesAsync(client, workflow, 4, seed: 4);

        var unrelated = StateWithContext(new Dictionary<string, string> { ["blob"] = RandomText(new Random(99), 256 * 1024) }, phase: 9);
        var rewritten = await client.CreateAsync(workflow, unrelated);
        states.Add(unrelated);
        created.Add(rewritten);

        await using var fullOnly = await env.StartCheckpointAsync(new Dictionary<string, string?> { ["Checkpoint:MaxDeltaChain"] = "0" });
        var asFull = await fullOnly.Checkpoints().CreateAsync(NewWorkflow("rewrite-full"), unrelated);
        Assert.Equal(StorageKind.Full, asFull.StorageKind);

        var stored = await env.StoredAsync(workflow);
        Assert.True(stored[1].IsDelta && stored[2].IsDelta && stored[3].IsDelta, "the 1% changes should be deltas");
        Assert.True(rewritten.StorageKind == StorageKind.Full || rewritten.StoredBytes < asFull.StoredBytes,
            $"stored as {rewritten.StorageKind} of {rewritten.StoredBytes} bytes; full would take {asFull.StoredBytes}");
        Assert.True(rewritten.StoredBytes <= asFull.StoredBytes);
        // Nothing like the 1% deltas: it carries the whole new context.
        Assert.True(rewritten.StoredBytes > 20 * stored[1].StoredBytes, $"{rewritten.StoredBytes} vs {stored[1].StoredBytes}");
        Assert.Equal(created[3].Id, stored[4].ParentId);

        // And the next small change is a small delta one step further down the chain.
        var context = JsonSerializer.Deserialize<Dictionary<string, string>>(unrelated.Context)!;
        var blob = context["blob"].ToCharArray();
        blob[1000] = blob[1000] == 'x' ? 'y' : 'x';
        context["blob"] = new string(blob);
        var next = StateWithContext(context, phase: 10);
        var after = await client.CreateAsync(workflow, next);
        states.Add(next);
        created.Add(after);
        Assert.Equal(StorageKind.Delta, after.StorageKind);
        Assert.Equal(rewritten.ChainDepth + 1, after.ChainDepth);
        Assert.True(after.StoredBytes * 100 < after.SizeBytes);

        await AssertEveryCheckpointReconstructsAsync(client, states, created);
    }
}
