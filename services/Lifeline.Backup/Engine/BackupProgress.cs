namespace Lifeline.Backup.Engine;

/// <summary>A step of a long operation, streamed to the caller.</summary>
public sealed record BackupProgress(string Phase, int Percent, long Bytes, string Message);

/// <summary>Receives progress; streaming it must not block the operation for long.</summary>
public delegate Task ProgressSink(BackupProgress progress);
