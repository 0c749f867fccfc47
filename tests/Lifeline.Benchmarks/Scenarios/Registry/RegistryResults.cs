using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>Registering the fleet.</summary>
internal sealed record RegistrationResult(
    int Workers,
    int Callers,
    double Seconds,
    double RegistrationsPerSecond,
    LatencySummary? Latency,
    long KeepAliveBeatsMeanwhile,
    CpuUse Cpu,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check,
    ServiceMemory? Memory);

/// <summary>
/// A heartbeat window: every worker beats once per second (unary Heartbeat calls, or beats on one
/// HeartbeatStream per worker), scheduled evenly over 100 ticks per second.
/// </summary>
/// <param name="Planned">Beats the schedule offers: workers × seconds.</param>
/// <param name="Sent">Beats actually sent: a worker skips a beat while its previous unary call is unanswered (or, on a stream, its previous write is still pending).</param>
/// <param name="SentPerSecond">Sent ÷ the window (or the time the ticks took, if longer): below offered when the client could not keep up.</param>
/// <param name="Answered">Beats answered OK (unary response, or stream ack).</param>
/// <param name="AchievedPerSecond">Answered ÷ time from the first send to the last answer.</param>
/// <param name="ScheduleLag">How late the client's ticks fired (client saturation shows here, not as service latency).</param>
/// <param name="InFlightPerSecond">Beats sent and not yet answered, sampled once a second (just before that second's first tick).</param>
/// <param name="BacklogGrew">In-flight beats grew over the window: the service fell behind.</param>
/// <param name="Sustained">Achieved ≥ 99 % of offered, no backlog growth, no failed calls.</param>
/// <param name="LeadInSeconds">Untimed beating at the full rate before the window.</param>
/// <param name="Cpu">CPU used from the window's first tick until every beat was answered.</param>
/// <param name="Postgres">PostgreSQL writes during the lead-in, the window and one heartbeat-flush interval after it (null for a registry this run did not start).</param>
/// <param name="Memory">The registry's memory at the end of the window (for streams: with every stream still open).</param>
internal sealed record HeartbeatResult(
    string Mode,
    int Workers,
    double WindowSeconds,
    double OfferedPerSecond,
    long Planned,
    long Sent,
    double SentPerSecond,
    long Answered,
    double AchievedPerSecond,
    LatencySummary? Latency,
    LatencySummary? ScheduleLag,
    IReadOnlyList<long> InFlightPerSecond,
    bool BacklogGrew,
    bool Sustained,
    int StreamsOpened,
    double? StreamsOpenSeconds,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    double LeadInSeconds,
    CpuUse Cpu,
    PostgresWrites? Postgres,
    ServiceMemory? Memory,
    bool Verified,
    string Check);

/// <summary>
/// Detection of lapsed heartbeats: workers beat a few times, stop together, and a WatchWorkers stream
/// records when each one's <c>lost</c> event arrives.
/// </summary>
/// <param name="SinceLastBeat">Lost event received − last beat sent.</param>
/// <param name="AfterLapse">Lost event received − (last beat sent + TTL): the detection delay after the heartbeat expired.</param>
/// <param name="Delivery">Lost event received − its occurred_at (the registry's commit): the watch stream's share.</param>
internal sealed record DetectionResult(
    int Workers,
    double HeartbeatIntervalSeconds,
    double TtlSeconds,
    int LostEvents,
    int WorkersLost,
    int Duplicates,
    int Missing,
    int OtherWorkersLost,
    DelayDistribution? SinceLastBeat,
    DelayDistribution? AfterLapse,
    DelayDistribution? Delivery,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check);
