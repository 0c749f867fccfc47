using Grpc.Core;
using Grpc.Health.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.V1;
using Npgsql;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>
/// <c>validation</c>: checks for real, and fails listing everything that failed:
/// <list type="bullet">
/// <item>each target service (empty: every configured one of queue, registry, checkpoint, backup) answers
/// grpc.health.v1 Check with SERVING — a service's health includes its database;</item>
/// <item>the recovery database answers;</item>
/// <item>queue and registry integrity: every consistency check runs, and finds no HIGH or CRITICAL issue;</item>
/// <item>system state is present: <c>system_states</c> has a snapshot.</item>
/// </list>
/// </summary>
public sealed class ValidationStep(SuiteClients clients, NpgsqlDataSource dataSource, IConsistencyProbe consistency) : IDrStepExecutor
{
    private static readonly TimeSpan HealthTimeout = TimeSpan.FromSeconds(10);

    public DrStepType Type => DrStepType.Validation;

    public async Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct)
    {
        var passed = new List<string>();
        var failed = new List<string>();
        var services = context.Step.Targets.Count > 0 ? [.. context.Step.Targets] : DrValidation.Services.Where(clients.Has).ToList();
        foreach (var service in services)
        {
            var problem = await HealthAsync(service, ct);
            (problem is null ? passed : failed).Add(problem ?? $"{service} serving");
        }

        try
        {
            await using var command = dataSource.CreateCommand("SELECT EXISTS (SELECT 1 FROM system_states)");
            var present = (bool)(await command.ExecuteScalarAsync(ct))!;
            passed.Add("recovery database reachable");
            (present ? passed : failed).Add(present ? "system state present" : "system state missing: system_states has no snapshot");
        }
        catch (NpgsqlException e)
        {
            failed.Add($"recovery database unreachable: {e.Message}");
        }

        var integrity = await consistency.CheckAsync(ct);
        passed.AddRange(integrity.Passed);
        failed.AddRange(integrity.Failed);

        return failed.Count == 0
            ? DrStepOutcome.Ok($"all {passed.Count} checks passed: {string.Join("; ", passed)}")
            : DrStepOutcome.Failed($"{failed.Count} check(s) failed: {string.Join("; ", failed)} (passed: {string.Join("; ", passed)})");
    }

    private async Task<string?> HealthAsync(string service, CancellationToken ct)
    {
        if (!clients.Has(service))
        {
            return $"{service}: not configured (services:{service}:grpc:0)";
        }
        try
        {
            var reply = await clients.Health(service)
                .CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow + HealthTimeout, cancellationToken: ct);
            return reply.Status == HealthCheckResponse.Types.ServingStatus.Serving ? null : $"{service}: health {reply.Status}";
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            return $"{service}: unreachable ({e.StatusCode}: {e.Status.Detail})";
        }
    }
}

/// <summary>What the consistency checks say about queue and registry integrity: passed and failed checks, described.</summary>
public sealed record IntegrityReport(IReadOnlyList<string> Passed, IReadOnlyList<string> Failed);

/// <summary>Runs every consistency check for a validation step.</summary>
public interface IConsistencyProbe
{
    Task<IntegrityReport> CheckAsync(CancellationToken ct);
}
