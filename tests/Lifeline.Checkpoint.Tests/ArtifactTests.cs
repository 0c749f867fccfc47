using Google.Protobuf;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>Artifacts: content-addressed, deduplicated per tenant, streamed in chunks and verified on the way out.</summary>
public sealed class ArtifactTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private const int ChunkBytes = 1024 * 1024; // Checkpoint:ArtifactChunkBytes default

    private Task<long> ArtifactRowsAsync(string tenant) =>
        env.ScalarAsync<long>("SELECT count(*) FROM artifacts WHERE tenant_id = @t", ("t", tenant));

    private Task<long> ChunkRowsAsync(string tenant, string sha256) =>
        env.ScalarAsync<long>(
            "SELECT count(*) FROM artifact_chunks c JOIN artifacts a ON a.blob_id = c.blob_id WHERE a.tenant_id = @t AND a.sha256 = @s",
            ("t", tenant), ("s", sha256));

    /// <summary>Chunks no artifacts row refers to: what a lost race or a refused upload must not leave behind.</summary>
    private Task<long> OrphanChunksAsync() =>
        env.ScalarAsync<long>("SELECT count(*) FROM artifact_chunks c WHERE NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.blob_id = c.blob_id)");

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_upload_in_chunks_is_addressed_by_its_sha256_and_downloads_byte_for_byte()
    {
        var tenant = NewTenant("art");
        var client = env.Checkpoint.Checkpoints(tenant);
        var bytes = RandomBytes(3 * ChunkBytes + 12_345, seed: 1);
        var sha = Canonical.Sha256Hex(bytes);

        var put = await client.PutArtifactAsync(bytes, chunkBytes: 300_000, name: "model.bin", contentType: "application/x-model");

        Assert.False(put.Deduplicated);
        Assert.Equal(sha, put.Artifact.Sha256);
        Assert.Equal(bytes.Length, put.Artifact.Size);
        Assert.Equal(("model.bin", "application/x-model", $"artifact:{sha}"), (put.Artifact.Name, put.Artifact.ContentType, put.Artifact.Ref));
        Assert.Equal(1, await ArtifactRowsAsync(tenant));
        Assert.Equal(4, await ChunkRowsAsync(tenant, sha)); // stored in ArtifactChunkBytes rows, not as sent
        Assert.Equal(bytes.Length, await env.ScalarAsync<long>(
            "SELECT sum(octet_length(c.data))::bigint FROM artifact_chunks c JOIN artifacts a ON a.blob_id = c.blob_id WHERE a.tenant_id = @t",
            ("t", tenant)));

        var (info, downloaded, chunks) = await client.GetArtifactAsync(sha);
        Assert.Equal(put.Artifact.Sha256, info.Sha256);
        Assert.Equal(put.Artifact.Size, info.Size);
        Assert.Equal(put.Artifact.Ref, info.Ref);
        Assert.Equal(bytes, downloaded);
        Assert.All(chunks, c => Assert.InRange(c, 1, ChunkBytes));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_same_bytes_again_are_deduplicated_into_one_stored_copy()
    {
        var tenant = NewTenant("dedup");
        var client = env.Checkpoint.Checkpoints(tenant);
        var bytes = RandomBytes(ChunkBytes + 10, seed: 2);
        var first = await client.PutArtifactAsync(bytes, chunkBytes: 64 * 1024);

        var second = await client.PutArtifactAsync(bytes, chunkBytes: 500_000, name: "again.bin");

        Assert.True(second.Deduplicated);
        Assert.Equal(first.Artifact.Sha256, second.Artifact.Sha256);
        Assert.Equal(1, await ArtifactRowsAsync(tenant));
        Assert.Equal(2, await ChunkRowsAsync(tenant, first.Artifact.Sha256));
        Assert.Equal(0, await OrphanChunksAsync());

        // Another tenant's copy is its own (deduplicated per tenant, never shared across).
        var otherTenant = NewTenant("dedup2");
        var other = await env.Checkpoint.Checkpoints(otherTenant).PutArtifactAsync(bytes, chunkBytes: ChunkBytes);
        Assert.False(other.Deduplicated);
        Assert.Equal(1, await ArtifactRowsAsync(otherTenant));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_uploads_of_the_same_new_bytes_store_one_copy()
    {
        var tenant = NewTenant("conc");
        await using var second = await env.StartCheckpointAsync();
        var clients = new[] { env.Checkpoint.Checkpoints(tenant), second.Checkpoints(tenant) };
        var bytes = RandomBytes(2 * ChunkBytes + 7, seed: 3);

        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => clients[i % 2].PutArtifactAsync(bytes, chunkBytes: 256 * 1024)));

        Assert.All(results, r => Assert.Equal(Canonical.Sha256Hex(bytes), r.Artifact.Sha256));
        Assert.Equal(1, results.Count(r => !r.Deduplicated));
        Assert.Equal(1, await ArtifactRowsAsync(tenant));
        Assert.Equal(3, await ChunkRowsAsync(tenant, results[0].Artifact.Sha256));
        Assert.Equal(0, await OrphanChunksAsync());
        Assert.Equal(bytes, (await clients[1].GetArtifactAsync(results[0].Artifact.Sha256)).Bytes);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_expected_sha256_that_does_not_match_is_refused_and_stores_nothing()
    {
        var tenant = NewTenant("mismatch");
        var client = env.Checkpoint.Checkpoints(tenant);
        var bytes = RandomBytes(ChunkBytes + 99, seed: 4);
        var wrong = Canonical.Sha256Hex(RandomBytes(10, seed: 5));

        await RefusedAsync(() => client.PutArtifactAsync(bytes, chunkBytes: 200_000, expectedSha256: wrong), StatusCode.InvalidArgument);

        Assert.Equal(0, await ArtifactRowsAsync(tenant));
        Assert.Equal(0, await OrphanChunksAsync());
        await RefusedAsync(() => client.GetArtifactAsync(wrong), StatusCode.NotFound);

        // The right one is accepted.
        var right = await client.PutArtifactAsync(bytes, chunkBytes: 200_000, expectedSha256: Canonical.Sha256Hex(bytes));
        Assert.False(right.Deduplicated);
        Assert.Equal(1, await ArtifactRowsAsync(tenant));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_corrupted_chunk_ends_the_download_with_data_loss()
    {
        var tenant = NewTenant("rot");
        var client = env.Checkpoint.Checkpoints(tenant);
        var bytes = RandomBytes(3 * ChunkBytes, seed: 6);
        var sha = (await client.PutArtifactAsync(bytes, chunkBytes: ChunkBytes)).Artifact.Sha256;
        var changed = await env.ExecuteAsync(
            """
            UPDATE artifact_chunks SET data = set_byte(data, 1000, get_byte(data, 1000) # 255)
            WHERE blob_id = (SELECT blob_id FROM artifacts WHERE tenant_id = @t AND sha256 = @s)
              AND seq = (SELECT max(seq) FROM artifact_chunks WHERE blob_id = (SELECT blob_id FROM artifacts WHERE tenant_id = @t AND sha256 = @s))
            """, ("t", tenant), ("s", sha));
        Assert.Equal(1, changed);

        var status = await RefusedAsync(() => client.GetArtifactAsync(sha), StatusCode.DataLoss);
        Assert.Equal("ARTIFACT_CORRUPTED", status.ErrorInfo().Reason);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_artifact_is_not_found()
    {
        var tenant = NewTenant("own");
        var bytes = RandomBytes(5000, seed: 7);
        var sha = (await env.Checkpoint.Checkpoints(tenant).PutArtifactAsync(bytes, chunkBytes: 1000)).Artifact.Sha256;

        await RefusedAsync(() => env.Checkpoint.Checkpoints(NewTenant("other")).GetArtifactAsync(sha), StatusCode.NotFound);
        Assert.Equal(bytes, (await env.Checkpoint.Checkpoints(tenant).GetArtifactAsync(sha)).Bytes);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Malformed_artifact_requests_are_refused_and_store_nothing()
    {
        var tenant = NewTenant("badart");
        var client = env.Checkpoint.Checkpoints(tenant);

        var status = await RefusedAsync(() => client.GetArtifactAsync("not-a-sha"), StatusCode.InvalidArgument);
        AssertViolation(status, "sha256");

        // Bytes before the header.
        await RefusedAsync(async () =>
        {
            using var call = client.PutArtifact();
            await call.RequestStream.WriteAsync(new PutArtifactRequest { Chunk = ByteString.CopyFrom(RandomBytes(100, 8)) });
            await call.RequestStream.CompleteAsync();
            return await call.ResponseAsync;
        }, StatusCode.InvalidArgument);

        // A chunk over 4 MiB.
        await RefusedAsync(() => client.PutArtifactAsync(RandomBytes(4 * 1024 * 1024 + 1, 9), chunkBytes: 4 * 1024 * 1024 + 1), StatusCode.InvalidArgument);

        Assert.Equal(0, await ArtifactRowsAsync(tenant));
        Assert.Equal(0, await OrphanChunksAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Unreferenced_artifacts_are_removed_after_the_grace_period_and_referenced_ones_kept()
    {
        await using var host = await env.StartCheckpointAsync(new Dictionary<string, string?>
        {
            ["Checkpoint:ArtifactGracePeriod"] = "00:00:02",
            ["Checkpoint:MaintenanceInterval"] = "00:00:00.250",
        });
        var tenant = NewTenant("grace");
        var client = host.Checkpoints(tenant);
        var kept = await client.PutArtifactAsync(RandomBytes(10_000, 10), chunkBytes: 4096);
        var dropped = await client.PutArtifactAsync(RandomBytes(10_000, 11), chunkBytes: 4096);
        var state = SmallState(1);
        state.Artifacts.Add(new ArtifactRef
        {
            Id = "model", Type = "model", Name = "m.bin", Version = 1, Checksum = kept.Artifact.Sha256, Size = kept.Artifact.Size, Ref = kept.Artifact.Ref,
        });
        var checkpoint = await client.CreateAsync(NewWorkflow("grace"), state);
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM checkpoint_artifacts WHERE checkpoint_id = @id AND sha256 = @s",
            ("id", Guid.Parse(checkpoint.Id)), ("s", kept.Artifact.Sha256)));

        var removed = await EventuallyAsync(async () => await ArtifactRowsAsync(tenant) == 1, TimeSpan.FromSeconds(20));

        Assert.True(removed, "the unreferenced artifact was not removed");
        Assert.Equal(0, await ChunkRowsAsync(tenant, dropped.Artifact.Sha256));
        Assert.Equal(0, await OrphanChunksAsync());
        await RefusedAsync(() => client.GetArtifactAsync(dropped.Artifact.Sha256), StatusCode.NotFound);
        Assert.Equal(10_000, (await client.GetArtifactAsync(kept.Artifact.Sha256)).Bytes.Length);
    }
}
