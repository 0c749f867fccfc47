using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Lifeline.Backup.Targets;

/// <summary>A database this service backs up: its name in the API and how to reach it.</summary>
public sealed class BackupTarget(string name, string connectionString, string maintenanceDatabase)
{
    public string Name { get; } = name;

    /// <summary>Connection to the target database itself.</summary>
    public string ConnectionString { get; } = connectionString;

    public string Database { get; } = new NpgsqlConnectionStringBuilder(connectionString).Database
        ?? throw new InvalidOperationException($"Backup target '{name}' names no database.");

    /// <summary>Same server and credentials, connected to the maintenance database (CREATE/ALTER/DROP DATABASE).</summary>
    public string MaintenanceConnectionString { get; } = new NpgsqlConnectionStringBuilder(connectionString)
    {
        Database = maintenanceDatabase,
        Pooling = false,
    }.ConnectionString;

    /// <summary>The same server and credentials, connected to another database (restore and scratch databases).</summary>
    public string ConnectionStringFor(string database) =>
        new NpgsqlConnectionStringBuilder(ConnectionString) { Database = database, Pooling = false }.ConnectionString;

    /// <summary>Prefix of this target's replication slots: stable, short, unique per database name.</summary>
    public string SlotPrefix => "lifeline_bk_" + Hash8(Database) + "_";

    /// <summary>A short, stable identifier-safe tag of a name (slot and database names have a 63-byte limit).</summary>
    public static string Hash8(string value) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)))[..8];

    /// <summary>A database name derived from the target's, at most 63 bytes.</summary>
    public string DerivedDatabaseName(string marker, Guid id)
    {
        var stem = Database.Length > 40 ? Database[..40] : Database;
        return $"{stem}_{marker}_{id.ToString("N")[..12]}";
    }
}
