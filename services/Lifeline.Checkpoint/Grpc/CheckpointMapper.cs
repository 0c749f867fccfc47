using Google.Protobuf.WellKnownTypes;
using Lifeline.Checkpoint.Artifacts;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Rollbacks;
using Lifeline.Checkpoint.V1;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Checkpoint.Grpc;

/// <summary>Domain records → contract messages.</summary>
internal static class CheckpointMapper
{
    public static CheckpointMetadata ToProto(this CheckpointRecord r)
    {
        var m = new CheckpointMetadata
        {
            Id = r.Id.ToString(),
            Name = r.Name,
            Type = (CheckpointType)r.Type,
            CreatedAt = Time(r.CreatedAt),
            WorkflowId = r.WorkflowId,
            Phase = r.Phase,
            Agent = r.Agent,
            Description = r.Description,
            IsValid = r.IsValid,
            ParentId = r.ParentId?.ToString() ?? "",
            Checksum = r.Checksum,
            SizeBytes = r.SizeBytes,
            Sequence = r.Sequence,
            StorageKind = (StorageKind)r.StorageKind,
            StoredBytes = r.StoredBytes,
            ChainDepth = r.ChainDepth,
            InvalidReason = r.InvalidReason ?? "",
        };
        m.Tags.AddRange(r.Tags);
        return m;
    }

    public static V1.Checkpoint ToProto(this CheckpointRecord r, byte[] canonical) => new()
    {
        Metadata = r.ToProto(),
        State = Storage.CanonicalState.Deserialize(canonical),
    };

    public static V1.WorkflowSummary ToProto(this Checkpoints.WorkflowSummary w) => new()
    {
        WorkflowId = w.WorkflowId,
        HeadCheckpointId = w.HeadId?.ToString() ?? "",
        HeadSequence = w.HeadSequence,
        CheckpointCount = w.CheckpointCount,
        StoredBytes = w.StoredBytes,
        StateBytes = w.StateBytes,
        CreatedAt = Time(w.CreatedAt),
        UpdatedAt = Time(w.UpdatedAt),
    };

    public static StateChange ToProto(this StateDifference d) => new() { Path = d.Path, Kind = d.Kind, Before = d.Before, After = d.After };

    public static RollbackResult ToProto(this RollbackOutcome o)
    {
        var result = new RollbackResult
        {
            TargetCheckpointId = o.TargetId.ToString(),
            NewHeadId = o.NewHeadId?.ToString() ?? "",
            BackupCheckpointId = o.BackupId?.ToString() ?? "",
            DryRun = o.DryRun,
            Verified = o.Verified,
            Strategy = o.Strategy,
            Duration = Duration.FromTimeSpan(o.Duration),
        };
        result.Items.AddRange(o.Items.Select(i => new RolledBackItem
        {
            Kind = i.Kind,
            Key = i.Key,
            PreviousVersion = i.PreviousVersion,
            RestoredVersion = i.RestoredVersion,
        }));
        result.VisitedIds.AddRange(o.VisitedIds.Select(id => id.ToString()));
        return result;
    }

    public static ArtifactInfo ToProto(this ArtifactRecord a) => new()
    {
        Sha256 = a.Sha256,
        Size = a.Size,
        Name = a.Name,
        ContentType = a.ContentType,
        CreatedAt = Time(a.CreatedAt),
        Ref = "artifact:" + a.Sha256,
    };
}
