using Npgsql;

namespace Lifeline.ServiceDefaults.Tenancy;

/// <summary>
/// The tenants that have live rows in a table whose indexes lead with <c>tenant_id</c>: a skip scan (one index
/// probe per distinct tenant, however many rows each has), then one existence probe per tenant for the rows that
/// count as live. For the service-to-service <c>ListActiveTenants</c> calls.
/// </summary>
public static class ActiveTenants
{
    /// <summary>
    /// Tenant ids in byte order. <paramref name="table"/> and <paramref name="liveCondition"/> (over alias <c>x</c>)
    /// are the caller's constants, never input.
    /// </summary>
    public static async Task<IReadOnlyList<string>> ListAsync(NpgsqlDataSource dataSource, string table, string liveCondition, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"""
            WITH RECURSIVE tenants(id) AS (
                (SELECT tenant_id FROM {table} ORDER BY tenant_id LIMIT 1)
                UNION ALL
                SELECT (SELECT tenant_id FROM {table} WHERE tenant_id > t.id ORDER BY tenant_id LIMIT 1)
                FROM tenants t WHERE t.id IS NOT NULL
            )
            SELECT t.id FROM tenants t
            WHERE t.id IS NOT NULL AND EXISTS (SELECT 1 FROM {table} x WHERE x.tenant_id = t.id AND {liveCondition})
            """);
        var tenants = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            tenants.Add(reader.GetString(0));
        }
        // The skip scan walks the index in the column's collation; the answer is in byte order.
        tenants.Sort(StringComparer.Ordinal);
        return tenants;
    }
}
