using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios;

/// <summary>One row of the report: what ran, how fast, whether every task was accounted for, and the service's memory after it.</summary>
internal sealed record ScenarioResult(
    string Kind,
    string Name,
    int Workers,
    int BatchSize,
    int Tasks,
    double Seconds,
    double TasksPerSecond,
    IReadOnlyDictionary<string, LatencySummary> Latencies,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check,
    ServiceMemory? Memory);
