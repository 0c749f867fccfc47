namespace Lifeline.Testing;

/// <summary>Server settings of a cluster that <see cref="PostgresServer"/> starts.</summary>
public sealed record PostgresSettings
{
    /// <summary>
    /// The shared test cluster's settings: fsync, synchronous_commit and full_page_writes off. Fast, and a
    /// crash may lose or corrupt data, which throw-away test databases do not mind.
    /// </summary>
    public static PostgresSettings ForTests { get; } = new() { CrashSafe = false };

    /// <summary>
    /// PostgreSQL's crash-safe defaults (fsync, synchronous_commit and full_page_writes on), as a
    /// production server runs: what a benchmark must measure for its numbers to mean anything.
    /// </summary>
    public static PostgresSettings Durable { get; } = new() { CrashSafe = true };

    /// <summary>Whether a commit waits for its WAL to reach disk and pages are protected against torn writes.</summary>
    public bool CrashSafe { get; init; }

    /// <summary>Loads <c>pg_stat_statements</c> (the benchmark's <c>--statements</c>: where PostgreSQL's time goes, per statement).</summary>
    public bool TrackStatements { get; init; }

    internal IEnumerable<string> ServerArguments()
    {
        var on = CrashSafe ? "on" : "off";
        string[] durability = ["-c", $"fsync={on}", "-c", $"synchronous_commit={on}", "-c", $"full_page_writes={on}"];
        return TrackStatements
            ? [.. durability, "-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=top"]
            : durability;
    }
}
