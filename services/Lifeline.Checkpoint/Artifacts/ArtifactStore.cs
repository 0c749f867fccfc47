using System.Security.Cryptography;
using Lifeline.Checkpoint.Options;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Checkpoint.Artifacts;

/// <summary>A stored artifact's metadata.</summary>
public sealed record ArtifactRecord(string Sha256, long Size, string Name, string ContentType, DateTime CreatedAt);

/// <summary>
/// Artifacts, content-addressed by SHA-256 and deduplicated per tenant. An upload streams into
/// chunk rows under a fresh blob id while it is hashed; once complete, one statement claims the
/// address (<c>INSERT … ON CONFLICT</c>): the first upload of some bytes keeps its chunks, any
/// other upload of the same bytes (even concurrent) deletes its own and returns the stored one.
/// An upload that fails or is cancelled deletes what it wrote; the maintenance loop removes chunks
/// a crash left behind.
/// </summary>
public sealed class ArtifactStore(NpgsqlDataSource dataSource, IOptions<CheckpointOptions> options)
{
    public sealed record Upload(string Name, string ContentType, string? ExpectedSha256);

    public async Task<(ArtifactRecord Artifact, bool Deduplicated)> PutAsync(
        string tenant, Upload upload, IAsyncEnumerable<ReadOnlyMemory<byte>> chunks, CancellationToken ct)
    {
        var chunkBytes = options.Value.ArtifactChunkBytes;
        var maxBytes = options.Value.MaxArtifactBytes;
        var blobId = Guid.CreateVersion7();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[chunkBytes];
        var filled = 0;
        var seq = 0;
        long size = 0;
        try
        {
            await using (var connection = await dataSource.OpenConnectionAsync(ct))
            {
                await foreach (var chunk in chunks.WithCancellation(ct))
                {
                    size += chunk.Length;
                    if (size > maxBytes)
                    {
                        throw ValidationException.For("chunk", $"the artifact exceeds the limit of {maxBytes} bytes");
                    }
                    hash.AppendData(chunk.Span);
                    var rest = chunk;
                    while (!rest.IsEmpty)
                    {
                        var take = Math.Min(rest.Length, chunkBytes - filled);
                        rest[..take].CopyTo(buffer.AsMemory(filled));
                        filled += take;
                        rest = rest[take..];
                        if (filled == chunkBytes)
                        {
                            await WriteChunkAsync(connection, blobId, seq++, buffer.AsMemory(0, filled), ct);
                            filled = 0;
                        }
                    }
                }
                if (filled > 0 || seq == 0)
                {
                    await WriteChunkAsync(connection, blobId, seq++, buffer.AsMemory(0, filled), ct);
                }
            }
            var sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (upload.ExpectedSha256 is { } expected && expected != sha)
            {
                throw ValidationException.For("header.expected_sha256", $"the uploaded bytes hash to {sha}, not {expected}");
            }
            ct.ThrowIfCancellationRequested();
            return await ClaimAsync(tenant, upload, blobId, sha, size);
        }
        catch
        {
            await DeleteChunksAsync(blobId);
            throw;
        }
    }

    public async Task<ArtifactRecord> GetInfoAsync(string tenant, string sha256, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var select = new NpgsqlCommand(
            "SELECT sha256, size, name, content_type, created_at FROM artifacts WHERE tenant_id = @t AND sha256 = @s", connection);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("s", sha256);
        await using var r = await select.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct)
            ? new ArtifactRecord(r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetString(3), r.GetDateTime(4))
            : throw new NotFoundException("artifact", sha256);
    }

    /// <summary>
    /// The artifact's bytes chunk by chunk, hashed as they go; after the last chunk a mismatch with the
    /// address (or the size) throws DATA_LOSS <c>ARTIFACT_CORRUPTED</c>.
    /// </summary>
    public async IAsyncEnumerable<byte[]> ReadAsync(string tenant, string sha256, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var select = new NpgsqlCommand(
            "SELECT a.size, c.data FROM artifacts a JOIN artifact_chunks c ON c.blob_id = a.blob_id " +
            "WHERE a.tenant_id = @t AND a.sha256 = @s ORDER BY c.seq", connection);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("s", sha256);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long size = -1, seen = 0;
        await using (var r = await select.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, ct))
        {
            while (await r.ReadAsync(ct))
            {
                size = r.GetInt64(0);
                var data = await r.GetFieldValueAsync<byte[]>(1, ct);
                hash.AppendData(data);
                seen += data.Length;
                if (data.Length > 0)
                {
                    yield return data;
                }
            }
        }
        var actual = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (size < 0)
        {
            throw new NotFoundException("artifact", sha256);
        }
        if (actual != sha256 || seen != size)
        {
            var e = new DataLossException("ARTIFACT_CORRUPTED",
                $"Artifact {sha256} failed its integrity check (stored bytes hash to {actual}, {seen} of {size} bytes); discard what was received.");
            e.Metadata["sha256"] = sha256;
            throw e;
        }
    }

    /// <summary>
    /// Removes artifacts no checkpoint refers to that were last uploaded before the grace period, and
    /// chunks no artifact owns (uploads a crash interrupted) older than it. Returns (artifacts, chunks).
    /// </summary>
    public async Task<(int Artifacts, int Chunks)> CollectAsync(TimeSpan grace, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(
                    """
                    WITH gone AS (
                        DELETE FROM artifacts a
                        WHERE a.last_used_at < now() - @grace
                          AND NOT EXISTS (SELECT 1 FROM checkpoint_artifacts ca WHERE ca.tenant_id = a.tenant_id AND ca.sha256 = a.sha256)
                        RETURNING blob_id)
                    DELETE FROM artifact_chunks WHERE blob_id IN (SELECT blob_id FROM gone)
                    """) { Parameters = { new("grace", grace) } },
                new NpgsqlBatchCommand(
                    """
                    DELETE FROM artifact_chunks c
                    WHERE c.created_at < now() - @grace AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.blob_id = c.blob_id)
                    """) { Parameters = { new("grace", grace) } },
            },
        };
        await batch.ExecuteNonQueryAsync(ct);
        return (batch.BatchCommands[0].RecordsAffected, batch.BatchCommands[1].RecordsAffected);
    }

    private async Task<(ArtifactRecord, bool)> ClaimAsync(string tenant, Upload upload, Guid blobId, string sha, long size)
    {
        // Not cancellable: once the address is claimed, the chunks belong to the artifact and must not be cleaned up as a failed upload.
        var ct = CancellationToken.None;
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var insert = new NpgsqlCommand(
            """
            INSERT INTO artifacts (tenant_id, sha256, blob_id, size, name, content_type)
            VALUES (@t, @s, @b, @size, @name, @type)
            ON CONFLICT (tenant_id, sha256) DO UPDATE SET last_used_at = now()
            RETURNING blob_id, size, name, content_type, created_at
            """, connection);
        insert.Parameters.AddWithValue("t", tenant);
        insert.Parameters.AddWithValue("s", sha);
        insert.Parameters.AddWithValue("b", blobId);
        insert.Parameters.AddWithValue("size", size);
        insert.Parameters.AddWithValue("name", upload.Name);
        insert.Parameters.AddWithValue("type", upload.ContentType);
        await using var r = await insert.ExecuteReaderAsync(ct);
        await r.ReadAsync(ct);
        var stored = new ArtifactRecord(sha, r.GetInt64(1), r.GetString(2), r.GetString(3), r.GetDateTime(4));
        var deduplicated = r.GetGuid(0) != blobId;
        await r.DisposeAsync();
        if (deduplicated)
        {
            await DeleteChunksAsync(blobId);
        }
        return (stored, deduplicated);
    }

    private static async Task WriteChunkAsync(NpgsqlConnection connection, Guid blobId, int seq, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await using var insert = new NpgsqlCommand("INSERT INTO artifact_chunks (blob_id, seq, data) VALUES (@b, @seq, @data)", connection);
        insert.Parameters.AddWithValue("b", blobId);
        insert.Parameters.AddWithValue("seq", seq);
        insert.Parameters.Add(new NpgsqlParameter<ReadOnlyMemory<byte>>("data", NpgsqlDbType.Bytea) { TypedValue = data });
        await insert.ExecuteNonQueryAsync(ct);
    }

    private async Task DeleteChunksAsync(Guid blobId)
    {
        // Not the call's token: a cancelled upload must still clean up after itself.
        await using var connection = await dataSource.OpenConnectionAsync(CancellationToken.None);
        await using var delete = new NpgsqlCommand("DELETE FROM artifact_chunks WHERE blob_id = @b", connection);
        delete.Parameters.AddWithValue("b", blobId);
        await delete.ExecuteNonQueryAsync(CancellationToken.None);
    }
}
