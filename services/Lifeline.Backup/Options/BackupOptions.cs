using System.ComponentModel.DataAnnotations;

namespace Lifeline.Backup.Options;

/// <summary>Settings of the backup service (section <c>Backup</c>), validated at start.</summary>
public sealed class BackupOptions
{
    public const string Section = "Backup";

    /// <summary>Where backup files live (created with mode 0700; files are 0600).</summary>
    [Required(AllowEmptyStrings = false)]
    public string Directory { get; set; } = "";

    /// <summary>
    /// The databases this service backs up, by target name. Each names a connection (a full connection string,
    /// or the name of a <c>ConnectionStrings</c> entry) and optionally the database on that server.
    /// </summary>
    public Dictionary<string, BackupTargetOptions> Targets { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Directory of pg_dump and pg_restore; empty: <c>pg_config --bindir</c>, then PATH.</summary>
    public string? PgBinDirectory { get; set; }

    /// <summary>The database the service connects to on a target's server to create, rename and drop databases.</summary>
    [Required(AllowEmptyStrings = false)]
    public string MaintenanceDatabase { get; set; } = "postgres";

    /// <summary>pg_dump / change file compression level (0–9).</summary>
    [Range(0, 9)]
    public int CompressionLevel { get; set; } = 6;

    /// <summary>How often the scheduler looks for due backups (and stale runs of crashed instances).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "01:00:00")]
    public TimeSpan SchedulerInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest wait for the replication slot to acknowledge a confirmed position.</summary>
    /// <summary>How often the last-successful-backup gauge is refreshed from the catalog (a scrape reads the last sample).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "01:00:00")]
    public TimeSpan MetricsSampleInterval { get; set; } = TimeSpan.FromSeconds(30);

    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan SlotConfirmTimeout { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>One backup target.</summary>
public sealed class BackupTargetOptions
{
    /// <summary>A connection string, or the name of a <c>ConnectionStrings</c> entry. It needs the rights listed in services/Lifeline.Backup/README.md.</summary>
    [Required(AllowEmptyStrings = false)]
    public string Connection { get; set; } = "";

    /// <summary>The database to back up; empty: the connection's own database.</summary>
    public string? Database { get; set; }
}
