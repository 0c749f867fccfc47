using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.Queue.Reading;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Queue.Reporting;

/// <summary>
/// Reports task outcomes to the registry (worker statistics and circuit breakers) off the hot path: it
/// follows the task history in commit order from a cursor stored in the queue database, sends each
/// batch of outcomes, and advances the cursor only after the registry accepted them. Outcomes are
/// identified by their history event id, so a batch sent twice counts once. One queue instance reports
/// at a time: the one elected for the role <see cref="Role"/> (<see cref="LeaderElection"/>); its cursor writes are
/// fenced by its term. If it stops, another takes over (at once when it resigned, within the TTL when it died).
/// </summary>
public sealed partial class OutcomeReporter(
    NpgsqlDataSource dataSource, TaskEventFeed feed, RegistryService.RegistryServiceClient registry,
    IOptions<QueueOptions> options, [FromKeyedServices(OutcomeReporter.Role)] LeaderElection leader, ILogger<OutcomeReporter> logger)
    : LeaderLoop(leader, logger, LoopBackoff.Between(options.Value.OutcomeReportInterval * 2, TimeSpan.FromSeconds(30)))
{
    /// <summary>The reporter's role in <c>lifeline_leaders</c> (and the DI key of its election).</summary>
    public const string Role = "outcome-reporter";

    /// <summary>How long a reporter's term lasts without renewal.</summary>
    public static readonly TimeSpan TermTtl = TimeSpan.FromSeconds(15);

    private const string CursorName = "registry-outcomes";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);

    // "recovered": RecoverTask took the task from a lease that ended without an outcome, a failure of that
    // worker like an expired lease (a recovery out of "timeout" was reported already, as "timed_out").
    private static readonly string[] OutcomeEvents = ["completed", "failed", "retry_scheduled", "dead_lettered", "timed_out", "lease_expired", "recovered"];

    // The term last announced in the log.
    private long _announcedTerm;

    protected override async Task<TimeSpan> RunTermPassAsync(LeaderTerm term, CancellationToken ct)
    {
        if (_announcedTerm != term.Term)
        {
            _announcedTerm = term.Term;
            LogLeading(logger);
        }
        // Whoever holds the role next resumes from the stored cursor.
        return await ReportOnceAsync(registry, term, ct) == 0 ? options.Value.OutcomeReportInterval : TimeSpan.Zero;
    }

    /// <summary>Sends the next batch of outcomes within <paramref name="term"/>; returns how many history events it consumed.</summary>
    public async Task<int> ReportOnceAsync(RegistryService.RegistryServiceClient registryClient, LeaderTerm term, CancellationToken ct)
    {
        var cursor = await ReadCursorAsync(ct);
        var (events, next) = await feed.ReadAsync(cursor, null, [], null, OutcomeEvents, ct);
        foreach (var tenantEvents in events.Where(e => Guid.TryParse(e.WorkerId, out _) && IsAttemptOutcome(e)).GroupBy(e => e.TenantId))
        {
            var request = new RecordTaskOutcomesRequest();
            request.Outcomes.AddRange(tenantEvents.Select(ToOutcome));
            try
            {
                // Retried on UNAVAILABLE by the client (RetriedCalls): each outcome counts once by its id.
                await registryClient.RecordTaskOutcomesAsync(request, ServiceCall.For(tenantEvents.Key, ct, CallTimeout));
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.InvalidArgument)
            {
                // A batch the registry will never accept must not stall reporting for good: skip it, loudly.
                LogBatchRefused(logger, request.Outcomes.Count, tenantEvents.Key, ex);
            }
        }
        if (next.CompareTo(cursor) > 0)
        {
            await SaveCursorAsync(next, term, ct);
        }
        return events.Count;
    }

    /// <summary>Whether the event ends an attempt of a worker that has not been reported yet.</summary>
    internal static bool IsAttemptOutcome(TaskEventRecord e) => e.EventType != "recovered" || e.FromStatus != Domain.TaskState.Timeout;

    internal static TaskOutcome ToOutcome(TaskEventRecord e)
    {
        System.Text.Json.JsonElement? details = e.Details is null ? null : System.Text.Json.JsonDocument.Parse(e.Details).RootElement;
        long durationMs = 0;
        string? code = null;
        if (details is { } d)
        {
            if (d.TryGetProperty("duration_ms", out var duration))
            {
                durationMs = duration.ValueKind == System.Text.Json.JsonValueKind.Number
                    ? duration.GetInt64()
                    : long.TryParse(duration.GetString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed : 0;
            }
            if (d.TryGetProperty("error_code", out var errorCode))
            {
                code = errorCode.GetString();
            }
        }
        var success = e.EventType == "completed";
        return new TaskOutcome
        {
            OutcomeId = $"queue:{e.Xid}-{e.Id}",
            WorkerId = e.WorkerId,
            TaskId = e.TaskId.ToString(),
            TaskType = e.TaskType,
            Success = success,
            Duration = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(Math.Max(0, durationMs))),
            ErrorCode = success ? "" : code ?? e.EventType.ToUpperInvariant(),
            OccurredAt = Time(e.OccurredAt),
        };
    }

    private async Task<LogPosition> ReadCursorAsync(CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT xid, event_id FROM outcome_report_cursors WHERE name = @name");
        command.Parameters.AddWithValue("name", CursorName);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? new LogPosition((ulong)reader.GetInt64(0), reader.GetInt64(1)) : new LogPosition(0, 0);
    }

    /// <summary>Moves the cursor, only while <paramref name="term"/> runs: a deposed reporter cannot move it back.</summary>
    private async Task SaveCursorAsync(LogPosition position, LeaderTerm term, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"""
            INSERT INTO outcome_report_cursors (name, xid, event_id, updated_at) SELECT @name, @xid, @id, now() WHERE {LeaderTerm.Fence}
            ON CONFLICT (name) DO UPDATE SET xid = EXCLUDED.xid, event_id = EXCLUDED.event_id, updated_at = now()
            """);
        command.Parameters.AddWithValue("name", CursorName);
        command.Parameters.AddWithValue("xid", (long)position.Xid);
        command.Parameters.AddWithValue("id", position.Id);
        term.AddFenceParameters(command.Parameters);
        await command.ExecuteNonQueryAsync(ct);
    }

    [LoggerMessage(EventId = 1502, Level = LogLevel.Information, Message = "This instance reports task outcomes to the registry")]
    private static partial void LogLeading(ILogger logger);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Error, Message = "The registry refused {Count} outcomes of tenant {Tenant} as invalid; they are skipped")]
    private static partial void LogBatchRefused(ILogger logger, int count, string tenant, Exception exception);
}
