namespace Lifeline.Backup.Catalog;

/// <summary>Catalog spellings of backup types, statuses and verdicts.</summary>
public static class BackupKinds
{
    public const string Full = "full";
    public const string Incremental = "incremental";
    public const string Differential = "differential";

    public const string Running = "running";
    public const string Completed = "completed";
    public const string Failed = "failed";

    public const string Unverified = "unverified";
    public const string Passed = "passed";
    public const string VerificationFailed = "failed";
}
