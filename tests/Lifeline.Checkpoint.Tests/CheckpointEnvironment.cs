using Lifeline.Checkpoint.V1;
using Npgsql;

namespace Lifeline.Checkpoint.Tests;

/// <summary>
/// A test class's own checkpoint database with one checkpoint instance on it (more on demand, e.g. a
/// second instance for races or one with other limits). Every test uses workflow ids and tenants of
/// its own, so the store can be asserted per workflow without the tests disturbing each other.
/// </summary>
public sealed class CheckpointEnvironment() : ServiceTestEnvironment("checkpoint")
{
    private readonly List<ServiceHost> _hosts = [];

    public ServiceHost Checkpoint { get; private set; } = null!;

    protected override async Task OnInitializedAsync() => Checkpoint = await StartCheckpointAsync();

    /// <summary>
    /// Starts another checkpoint instance on this environment's database. <paramref name="settings"/>
    /// are <c>Checkpoint:</c> settings (e.g. <c>["Checkpoint:MaxDeltaChain"] = "5"</c>); the instance is
    /// stopped with the environment, or earlier by disposing it.
    /// </summary>
    public async Task<ServiceHost> StartCheckpointAsync(IDictionary<string, string?>? settings = null)
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:checkpointdb"] = DatabaseConnectionString,
            // Maintenance stays out of the way unless a test asks for it.
            ["Checkpoint:MaintenanceInterval"] = "01:00:00",
        };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
        var host = await ServiceHost.StartAsync(CheckpointApplication.Build, config);
        lock (_hosts)
        {
            _hosts.Add(host);
        }
        return host;
    }

    protected override async Task OnDisposingAsync()
    {
        foreach (var host in _hosts)
        {
            await host.DisposeAsync();
        }
    }

    public async Task<int> ExecuteAsync(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
        return await command.ExecuteNonQueryAsync();
    }

    public Task<long> CountCheckpointsAsync(string workflowId, string tenant = "default") =>
        ScalarAsync<long>("SELECT count(*) FROM checkpoints WHERE tenant_id = @t AND workflow_id = @w", ("t", tenant), ("w", workflowId));

    public Task<long> CountWorkflowRowsAsync(string workflowId, string tenant = "default") =>
        ScalarAsync<long>("SELECT count(*) FROM workflows WHERE tenant_id = @t AND workflow_id = @w", ("t", tenant), ("w", workflowId));

    /// <summary>The head the workflows row names, and the checkpoints stored for it (null when there is no row).</summary>
    public async Task<(Guid? HeadId, long HeadSequence, long CheckpointCount)?> WorkflowRowAsync(string workflowId, string tenant = "default")
    {
        await using var connection = new NpgsqlConnection(DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            """
            SELECT w.head_id, w.head_sequence,
                   (SELECT count(*) FROM checkpoints c WHERE c.tenant_id = w.tenant_id AND c.workflow_id = w.workflow_id)
            FROM workflows w WHERE w.tenant_id = @t AND w.workflow_id = @w
            """, connection);
        command.Parameters.AddWithValue("t", tenant);
        command.Parameters.AddWithValue("w", workflowId);
        await using var reader = await command.ExecuteReaderAsync();
        if (!await reader.ReadAsync())
        {
            return null;
        }
        return (reader.IsDBNull(0) ? null : reader.GetGuid(0), Convert.ToInt64(reader.GetValue(1)), Convert.ToInt64(reader.GetValue(2)));
    }

    /// <summary>How each checkpoint of a workflow is stored, oldest first.</summary>
    public async Task<List<StoredCheckpoint>> StoredAsync(string workflowId, string tenant = "default")
    {
        await using var connection = new NpgsqlConnection(DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            """
            SELECT id, sequence, parent_id, storage_kind, base_id, chain_depth, stored_bytes, octet_length(payload), size_bytes, checksum, is_valid, type
            FROM checkpoints WHERE tenant_id = @t AND workflow_id = @w ORDER BY sequence
            """, connection);
        command.Parameters.AddWithValue("t", tenant);
        command.Parameters.AddWithValue("w", workflowId);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<StoredCheckpoint>();
        while (await reader.ReadAsync())
        {
            rows.Add(new StoredCheckpoint(
                reader.GetGuid(0).ToString(),
                Convert.ToInt64(reader.GetValue(1)),
                reader.IsDBNull(2) ? "" : reader.GetGuid(2).ToString(),
                Convert.ToInt32(reader.GetValue(3)),
                reader.IsDBNull(4) ? "" : reader.GetGuid(4).ToString(),
                Convert.ToInt32(reader.GetValue(5)),
                Convert.ToInt64(reader.GetValue(6)),
                reader.IsDBNull(7) ? 0 : Convert.ToInt64(reader.GetValue(7)),
                Convert.ToInt64(reader.GetValue(8)),
                reader.GetString(9),
                reader.GetBoolean(10),
                Convert.ToInt32(reader.GetValue(11))));
        }
        return rows;
    }

    /// <summary>Flips every bit of one byte of a checkpoint's stored payload (as disk rot would).</summary>
    public async Task CorruptPayloadAsync(string checkpointId, int offset = 20)
    {
        var changed = await ExecuteAsync(
            """
            UPDATE checkpoints
            SET payload = set_byte(payload, least(@o, octet_length(payload) - 1), get_byte(payload, least(@o, octet_length(payload) - 1)) # 255)
            WHERE id = @id
            """, ("id", Guid.Parse(checkpointId)), ("o", offset));
        Assert.Equal(1, changed);
    }
}

/// <summary>One checkpoints row, as stored.</summary>
public sealed record StoredCheckpoint(
    string Id, long Sequence, string ParentId, int StorageKind, string BaseId, int ChainDepth, long StoredBytes, long PayloadBytes,
    long SizeBytes, string Checksum, bool IsValid, int Type)
{
    public bool IsFull => StorageKind == (int)V1.StorageKind.Full;
    public bool IsDelta => StorageKind == (int)V1.StorageKind.Delta;
}

/// <summary>Checkpoint clients of a running instance.</summary>
public static class HostClients
{
    public static CheckpointService.CheckpointServiceClient Checkpoints(this ServiceHost host, string tenant = "default") => new(host.ForTenant(tenant));
}
