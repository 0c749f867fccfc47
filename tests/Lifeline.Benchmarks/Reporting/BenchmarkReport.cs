using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The service's memory after one phase of the run.</summary>
internal sealed record MemoryPhase(string Phase, ServiceMemory Memory);

/// <summary>Where the run went and what the service was, for the report header.</summary>
internal sealed record TargetInfo(string Url, string Description, IReadOnlyDictionary<string, string> PostgresSettings);

/// <summary>LeaseTasks and CompleteTask latency of one processing cell.</summary>
internal sealed record LatencyReport(string Cell, LatencySummary? LeaseTasks, LatencySummary? CompleteTask);

/// <summary>Everything a run measured; printed as tables and written as JSON.</summary>
internal sealed record BenchmarkReport(
    DateTimeOffset GeneratedAtUtc,
    string Profile,
    string Tenant,
    MachineInfo Machine,
    string LoadAverageAtStart,
    string LoadAverageAtEnd,
    double RunSeconds,
    TargetInfo Target,
    IReadOnlyList<ScenarioResult> Results,
    LatencyReport? Latency,
    IReadOnlyList<MemoryPhase> Memory,
    int ServiceWarningsAndErrors,
    IReadOnlyList<string> ServiceLogSample)
{
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public bool AllVerified => Results.All(r => r.Verified);

    public async Task WriteJsonAsync(string path, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await using var file = File.Create(path);
        await JsonSerializer.SerializeAsync(file, this, JsonOptions, ct);
    }
}
