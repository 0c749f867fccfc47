using System.ComponentModel.DataAnnotations;

namespace Lifeline.Checkpoint.Options;

/// <summary>Settings of the checkpoint service (section <c>Checkpoint</c>), validated at start.</summary>
public sealed class CheckpointOptions
{
    public const string Section = "Checkpoint";

    /// <summary>Largest canonical state a checkpoint may hold, in bytes.</summary>
    [Range(1024, 60 * 1024 * 1024)]
    public int MaxStateBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// Most deltas between a checkpoint and the full snapshot it reconstructs from: a read replays at
    /// most this many. 0 stores every checkpoint as a full snapshot.
    /// </summary>
    [Range(0, 1000)]
    public int MaxDeltaChain { get; set; } = 32;

    /// <summary>How long a rollback may take when the request gives no timeout.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan DefaultRollbackTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest artifact PutArtifact accepts, in bytes.</summary>
    [Range(1, long.MaxValue)]
    public long MaxArtifactBytes { get; set; } = 1L << 30;

    /// <summary>Size of the rows artifact bytes are stored in and the messages GetArtifact sends.</summary>
    [Range(4096, 4 * 1024 * 1024)]
    public int ArtifactChunkBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// The bound on a workflow's history: the maintenance loop removes its oldest checkpoints beyond
    /// this many (phase endpoints kept). 0 turns the bound off.
    /// </summary>
    [Range(0, 1_000_000)]
    public int RetentionKeepLast { get; set; } = 1000;

    /// <summary>Uploaded artifacts no checkpoint refers to are removed after this long.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "3650.00:00:00")]
    public TimeSpan ArtifactGracePeriod { get; set; } = TimeSpan.FromDays(1);

    /// <summary>How often the maintenance loop (history bound, unreferenced artifacts) runs.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "1.00:00:00")]
    public TimeSpan MaintenanceInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Bytes of recently written states kept in memory as delta bases for the next checkpoint.</summary>
    [Range(0, long.MaxValue)]
    public long StateCacheBytes { get; set; } = 256L * 1024 * 1024;
}
