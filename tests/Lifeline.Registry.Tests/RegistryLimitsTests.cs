using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Registry.V1;
using Lifeline.Testing;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// Bounds of the registry's input: counts checked before any item (a quick and small refusal), every metadata string
/// and resource bounded, and page tokens accepted only as issued. Refusals are INVALID_ARGUMENT and write nothing.
/// </summary>
public sealed class RegistryLimitsTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private const int SmallStatusBytes = 4096;
    // Quick even beside the whole suite on a loaded two-core machine; before the count-first checks these took 10–17 s.
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(6);
    private static readonly string OneMiB = new('x', 1024 * 1024);

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    private static string NewTenant() => $"lim-{Guid.NewGuid():N}"[..20];

    [Fact(Timeout = 120_000)]
    public async Task A_heartbeat_with_100000_running_tasks_is_refused_before_any_id_is_parsed()
    {
        var (client, worker, tenant) = await RegisteredAsync();
        var before = await WorkerRowAsync(worker.Id);
        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Busy };
        beat.RunningTaskIds.AddRange(Enumerable.Range(0, 100_000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(() => client.HeartbeatAsync(beat, deadline: Deadline).ResponseAsync);

        var violation = Assert.Single(status.GetDetail<BadRequest>().FieldViolations);
        Assert.Equal("running_task_ids", violation.Field);
        Assert.Contains("1000", violation.Description, StringComparison.Ordinal);
        Assert.Contains("100000", violation.Description, StringComparison.Ordinal);
        Assert.Equal(before, await WorkerRowAsync(worker.Id));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_heartbeat_with_1000_malformed_ids_lists_only_the_first_problems()
    {
        var (client, worker, _) = await RegisteredAsync();
        var before = await WorkerRowAsync(worker.Id);
        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch };
        beat.RunningTaskIds.AddRange(Enumerable.Range(0, 1000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(() => client.HeartbeatAsync(beat, deadline: Deadline).ResponseAsync);

        var violations = status.GetDetail<BadRequest>().FieldViolations;
        Assert.InRange(violations.Count, 2, 12);
        Assert.Equal("running_task_ids[0]", violations[0].Field);
        Assert.Equal("running_task_ids", violations[^1].Field);
        Assert.Equal(before, await WorkerRowAsync(worker.Id));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_stream_heartbeat_with_100000_running_tasks_is_refused_quickly()
    {
        var (client, worker, _) = await RegisteredAsync();
        var before = await WorkerRowAsync(worker.Id);
        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch };
        beat.RunningTaskIds.AddRange(Enumerable.Range(0, 100_000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(async () =>
        {
            using var call = client.HeartbeatStream(deadline: Deadline);
            await call.RequestStream.WriteAsync(new HeartbeatStreamRequest { Beat = beat });
            await call.ResponseStream.MoveNext();
        });

        Assert.Equal("beat.running_task_ids", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);
        Assert.Equal(before, await WorkerRowAsync(worker.Id));
    }

    public static TheoryData<string, string> OversizedMetadata => new()
    {
        { "1 MiB version", "metadata.version" },
        { "1 MiB special feature", "metadata.special_features[0]" },
        { "empty special feature", "metadata.special_features[0]" },
        { "65 special features", "metadata.special_features" },
        { "1 MiB tag key", "metadata.tags (entry 0)" },
        { "1 MiB tag value", "metadata.tags[team]" },
        { "65 tags", "metadata.tags" },
        { "1 MiB region", "metadata.location.region" },
        { "1 MiB zone", "metadata.location.zone" },
        { "NUL in a tag value", "metadata.tags[team]" },
        { "NUL in the version", "metadata.version" },
        { "cpu +Infinity", "metadata.resources.cpu" },
        { "cpu -Infinity", "metadata.resources.cpu" },
        { "cpu NaN", "metadata.resources.cpu" },
        { "cpu above 1,000,000", "metadata.resources.cpu" },
        { "101 capabilities", "capabilities" },
    };

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(OversizedMetadata))]
    public async Task Worker_metadata_out_of_bounds_is_refused_on_the_field_and_writes_nothing(string @case, string field)
    {
        var tenant = NewTenant();
        var request = Registration();
        var m = request.Metadata;
        switch (@case)
        {
            case "1 MiB version": m.Version = OneMiB; break;
            case "1 MiB special feature": m.SpecialFeatures.Add(OneMiB); break;
            case "empty special feature": m.SpecialFeatures.Add(""); break;
            case "65 special features": m.SpecialFeatures.AddRange(Enumerable.Range(0, 65).Select(i => $"f{i}")); break;
            case "1 MiB tag key": m.Tags[OneMiB] = "v"; break;
            case "1 MiB tag value": m.Tags["team"] = OneMiB; break;
            case "65 tags": foreach (var i in Enumerable.Range(0, 65)) { m.Tags[$"k{i}"] = "v"; } break;
            case "1 MiB region": m.Location.Region = OneMiB; break;
            case "1 MiB zone": m.Location.Zone = OneMiB; break;
            case "NUL in a tag value": m.Tags["team"] = "a\0b"; break;
            case "NUL in the version": m.Version = "1\0"; break;
            case "cpu +Infinity": m.Resources.Cpu = double.PositiveInfinity; break;
            case "cpu -Infinity": m.Resources.Cpu = double.NegativeInfinity; break;
            case "cpu NaN": m.Resources.Cpu = double.NaN; break;
            case "cpu above 1,000,000": m.Resources.Cpu = 1_000_001; break;
            case "101 capabilities": request.Capabilities.AddRange(Enumerable.Range(0, 100).Select(i => $"type.{i}")); break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            env.Registry.Registry(tenant).RegisterWorkerAsync(request, deadline: Deadline).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.True(error.WireBytes() < SmallStatusBytes, $"the refusal took {error.WireBytes()} bytes");
        Assert.Equal(field, Assert.Single(error.GetRpcStatus()!.GetDetail<BadRequest>().FieldViolations).Field);
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM workers WHERE tenant_id = @t", ("t", tenant)));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM worker_events WHERE tenant_id = @t", ("t", tenant)));
    }

    [Fact(Timeout = 120_000)]
    public async Task Worker_metadata_at_its_bounds_is_stored_and_read_back()
    {
        var request = Registration();
        var m = request.Metadata;
        m.Version = new string('v', 128);
        m.Resources.Cpu = 1_000_000;
        m.Location.Region = new string('r', 128);
        m.SpecialFeatures.AddRange(Enumerable.Range(0, 64).Select(i => $"{i}{new string('f', 120)}"));
        foreach (var i in Enumerable.Range(0, 64))
        {
            m.Tags[$"{i}{new string('k', 125)}"] = new string('v', 256);
        }

        var worker = (await env.Registry.Registry(NewTenant()).RegisterWorkerAsync(request, deadline: Deadline)).Worker;

        Assert.Equal(m, worker.Metadata);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_negative_or_denormal_outcome_duration_is_refused()
    {
        var (client, worker, tenant) = await RegisteredAsync();
        foreach (var duration in new[] { new Duration { Nanos = -1 }, new Duration { Seconds = 1, Nanos = 1_000_000_000 }, new Duration { Seconds = -1, Nanos = 5 } })
        {
            var status = await RefusedAsync(() => client.RecordTaskOutcomeAsync(new RecordTaskOutcomeRequest
            {
                WorkerId = worker.Id,
                Outcome = new TaskOutcome
                {
                    OutcomeId = Guid.NewGuid().ToString(), TaskId = Guid.NewGuid().ToString(), TaskType = "email.send", Duration = duration,
                },
            }, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument);
            Assert.Equal("outcome.duration", Assert.Single(status.BadRequest().FieldViolations).Field);
        }
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE tenant_id = @t", ("t", tenant)));
    }

    [Fact(Timeout = 120_000)]
    public async Task Worker_listings_accept_only_page_tokens_they_issued()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        for (var i = 0; i < 3; i++)
        {
            await client.RegisterWorkerAsync(Registration($"w{i}-{Guid.NewGuid():N}"[..12]), deadline: Deadline);
        }
        var first = await client.ListWorkersAsync(new ListWorkersRequest { PageSize = 1 }, deadline: Deadline);
        Assert.NotEmpty(first.NextPageToken);
        var breakers = await client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { PageSize = 1 }, deadline: Deadline);

        // Issued tokens page through every worker once.
        var names = first.Workers.Select(w => w.Name).ToList();
        for (var token = first.NextPageToken; token.Length > 0;)
        {
            var page = await client.ListWorkersAsync(new ListWorkersRequest { PageSize = 1, PageToken = token }, deadline: Deadline);
            names.AddRange(page.Workers.Select(w => w.Name));
            token = page.NextPageToken;
        }
        Assert.Equal(3, names.Distinct().Count());

        var issued = first.NextPageToken;
        var notIssued = new[]
        {
            "AAAA", "////", "%%%", "AAAAAAAAAAAAAAAAAAAAAAAA", Convert.ToBase64String("w1"u8), issued[..^2], issued + "A",
            issued[..5] + (issued[5] == 'A' ? 'B' : 'A') + issued[6..], Guid.NewGuid().ToString(), new string('A', 100_000),
        };
        foreach (var token in notIssued)
        {
            var status = await RefusedAsync(() => client.ListWorkersAsync(new ListWorkersRequest { PageToken = token }, deadline: Deadline).ResponseAsync,
                StatusCode.InvalidArgument);
            Assert.Equal("page_token", Assert.Single(status.BadRequest().FieldViolations).Field);
            status = await RefusedAsync(() => client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { PageToken = token }, deadline: Deadline).ResponseAsync,
                StatusCode.InvalidArgument);
            Assert.Equal("page_token", Assert.Single(status.BadRequest().FieldViolations).Field);
        }
        // A worker listing's token is not a circuit-breaker listing's, nor the other way round.
        var crossed = await RefusedAsync(() => client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { PageToken = issued }, deadline: Deadline).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal("page_token", Assert.Single(crossed.BadRequest().FieldViolations).Field);
        Assert.NotEmpty(breakers.NextPageToken);
        await client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { PageSize = 1, PageToken = breakers.NextPageToken }, deadline: Deadline);
        crossed = await RefusedAsync(() => client.ListWorkersAsync(new ListWorkersRequest { PageToken = breakers.NextPageToken }, deadline: Deadline).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal("page_token", Assert.Single(crossed.BadRequest().FieldViolations).Field);
    }

    private async Task<(RegistryService.RegistryServiceClient Client, Worker Worker, string Tenant)> RegisteredAsync()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var worker = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline)).Worker;
        return (client, worker, tenant);
    }

    private Task<string> WorkerRowAsync(string id) =>
        env.ScalarAsync<string>("SELECT row_to_json(w)::text FROM workers w WHERE id = @id", ("id", Guid.Parse(id)));

    private static async Task<Google.Rpc.Status> RefusedSmallAndQuickAsync(Func<Task> call)
    {
        var (error, elapsed) = await Refusals.TimedAsync(call, StatusCode.InvalidArgument);
        Assert.True(elapsed < Quick, $"the refusal took {elapsed}");
        Assert.True(error.WireBytes() < SmallStatusBytes, $"the refusal took {error.WireBytes()} bytes of trailers");
        return error.GetRpcStatus()!;
    }
}
