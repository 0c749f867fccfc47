namespace Lifeline.Backup.Data;

/// <summary>A catalog row: one backup of one target and its file.</summary>
public sealed class BackupEntity
{
    public Guid Id { get; set; }
    public string Target { get; set; } = "";
    /// <summary><c>full</c>, <c>incremental</c> or <c>differential</c>.</summary>
    public string Type { get; set; } = "";
    /// <summary><c>running</c>, <c>completed</c> or <c>failed</c>.</summary>
    public string Status { get; set; } = "";
    public Guid? ParentId { get; set; }
    public Guid? BaseId { get; set; }
    /// <summary>The change range (LSNs as 64-bit integers); a full backup's snapshot point is its end.</summary>
    public long StartLsn { get; set; }
    public long EndLsn { get; set; }
    /// <summary>Replication slot of the chain (set on full backups).</summary>
    public string? SlotName { get; set; }
    /// <summary>File name relative to the backup directory.</summary>
    public string FileName { get; set; } = "";
    public long SizeBytes { get; set; }
    public string? Sha256 { get; set; }
    public DateTime StartedAt { get; set; }
    public DateTime? CompletedAt { get; set; }
    public long DurationMs { get; set; }
    public string? ServerVersion { get; set; }
    public string? SchemaVersion { get; set; }
    /// <summary>Digest of the target's table and column definitions; changes only with DDL.</summary>
    public string? SchemaFingerprint { get; set; }
    public long ChangeCount { get; set; }
    /// <summary>Per-table row counts and content checksums at the backup's point (jsonb).</summary>
    public string TableChecksums { get; set; } = "[]";
    /// <summary><c>unverified</c>, <c>passed</c> or <c>failed</c>.</summary>
    public string Verification { get; set; } = "unverified";
    public DateTime? VerifiedAt { get; set; }
    public string? VerificationMessage { get; set; }
    public string? Error { get; set; }
}

/// <summary>One restore of a target.</summary>
public sealed class RestoreRunEntity
{
    public Guid Id { get; set; }
    public string Target { get; set; } = "";
    public Guid BackupId { get; set; }
    /// <summary><c>running</c>, <c>completed</c> or <c>failed</c>.</summary>
    public string Status { get; set; } = "";
    public Guid? PreRestoreBackupId { get; set; }
    public string? RestoredDatabase { get; set; }
    public string? ReplacedDatabase { get; set; }
    public DateTime StartedAt { get; set; }
    public DateTime? CompletedAt { get; set; }
    public string? Error { get; set; }
}

/// <summary>A cron schedule of one backup type for one target.</summary>
public sealed class ScheduleEntity
{
    public string Target { get; set; } = "";
    public string Type { get; set; } = "";
    public string Cron { get; set; } = "";
    public DateTime NextRunAt { get; set; }
    public DateTime? LastRunAt { get; set; }
    public Guid? LastBackupId { get; set; }
    public string? LastError { get; set; }
    public DateTime UpdatedAt { get; set; }
}
