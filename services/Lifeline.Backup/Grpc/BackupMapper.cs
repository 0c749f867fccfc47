using Google.Protobuf.WellKnownTypes;
using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.V1;
using BackupProto = Lifeline.Backup.V1.Backup;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Backup.Grpc;

/// <summary>Catalog rows ↔ contract messages.</summary>
internal static class BackupMapper
{
    public static string TypeName(BackupType type) => type switch
    {
        BackupType.Full => BackupKinds.Full,
        BackupType.Incremental => BackupKinds.Incremental,
        BackupType.Differential => BackupKinds.Differential,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static BackupType Type(string name) => name switch
    {
        BackupKinds.Full => BackupType.Full,
        BackupKinds.Incremental => BackupType.Incremental,
        BackupKinds.Differential => BackupType.Differential,
        _ => BackupType.Unspecified,
    };

    public static string StatusName(BackupStatus status) => status switch
    {
        BackupStatus.Running => BackupKinds.Running,
        BackupStatus.Completed => BackupKinds.Completed,
        BackupStatus.Failed => BackupKinds.Failed,
        _ => throw new ArgumentOutOfRangeException(nameof(status)),
    };

    private static BackupStatus Status(string name) => name switch
    {
        BackupKinds.Running => BackupStatus.Running,
        BackupKinds.Completed => BackupStatus.Completed,
        BackupKinds.Failed => BackupStatus.Failed,
        _ => BackupStatus.Unspecified,
    };

    private static VerificationStatus Verification(string name) => name switch
    {
        BackupKinds.Passed => VerificationStatus.Passed,
        BackupKinds.VerificationFailed => VerificationStatus.Failed,
        _ => VerificationStatus.Unverified,
    };

    public static BackupProto ToProto(this BackupEntity b)
    {
        var proto = new BackupProto
        {
            BackupId = b.Id.ToString(),
            Target = b.Target,
            Type = Type(b.Type),
            Status = Status(b.Status),
            ParentBackupId = b.ParentId?.ToString() ?? "",
            BaseBackupId = b.BaseId?.ToString() ?? "",
            StartLsn = ChangeCapture.ToLsn(b.StartLsn).ToString(),
            EndLsn = ChangeCapture.ToLsn(b.EndLsn).ToString(),
            SizeBytes = b.SizeBytes,
            Sha256 = b.Sha256 ?? "",
            StartedAt = Time(b.StartedAt),
            CompletedAt = Time(b.CompletedAt),
            DurationMs = b.DurationMs,
            ServerVersion = b.ServerVersion ?? "",
            SchemaVersion = b.SchemaVersion ?? "",
            ChangeCount = b.ChangeCount,
            Verification = Verification(b.Verification),
            VerifiedAt = Time(b.VerifiedAt),
            VerificationMessage = b.VerificationMessage ?? "",
            Error = b.Error ?? "",
        };
        proto.Tables.AddRange(BackupCatalog.Tables(b).Select(ToProto));
        return proto;
    }

    public static V1.TableChecksum ToProto(this Engine.TableChecksum t) =>
        new() { Table = t.Table, RowCount = t.RowCount, Checksum = t.Checksum };

    public static Progress ToProto(this BackupProgress p) =>
        new() { Phase = p.Phase, Percent = p.Percent, Bytes = p.Bytes, Message = p.Message };

    public static Schedule ToProto(this ScheduleEntity s) => new()
    {
        Target = s.Target,
        Type = Type(s.Type),
        Cron = s.Cron,
        NextRunAt = s.NextRunAt == DateTime.MaxValue ? null : Time(s.NextRunAt),
        LastRunAt = Time(s.LastRunAt),
        LastBackupId = s.LastBackupId?.ToString() ?? "",
        LastError = s.LastError ?? "",
    };
}
