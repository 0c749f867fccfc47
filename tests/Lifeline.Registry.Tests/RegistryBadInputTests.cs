using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// Refused requests: the exact field is named in BadRequest (or the reason in ErrorInfo), and nothing
/// is written. Each case runs in its own tenant, so the tenant's row counts prove "nothing written".
/// </summary>
public sealed class RegistryBadInputTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private static string NewTenant() => $"bad-{Guid.NewGuid():N}"[..20];

    /// <summary>Rows of a tenant in every registry table.</summary>
    private async Task<(long Workers, long Events, long Breakers, long Outcomes, long Stats)> RowsAsync(string tenant)
    {
        async Task<long> Count(string table) =>
            await env.ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE tenant_id = @t", ("t", tenant));
        return (await Count("workers"), await Count("worker_events"), await Count("circuit_breakers"),
            await Count("task_outcomes"), await Count("worker_stats"));
    }

    private static void AssertViolation(Google.Rpc.Status status, string field)
    {
        var violations = status.BadRequest().FieldViolations;
        Assert.Contains(violations, v => v.Field == field);
        Assert.Equal("INVALID_ARGUMENT", status.ErrorInfo().Reason);
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("empty name", "name")]
    [InlineData("name with invalid characters", "name")]
    [InlineData("name longer than 128", "name")]
    [InlineData("unknown type 99", "type")]
    [InlineData("unspecified type", "type")]
    [InlineData("no capabilities", "capabilities")]
    [InlineData("invalid capability", "capabilities[1]")]
    [InlineData("negative cpu", "metadata.resources.cpu")]
    [InlineData("negative memory_mb", "metadata.resources.memory_mb")]
    [InlineData("negative disk_mb", "metadata.resources.disk_mb")]
    [InlineData("negative max_concurrent_tasks", "metadata.max_concurrent_tasks")]
    public async Task An_invalid_registration_is_refused_on_the_exact_field_and_writes_nothing(string @case, string field)
    {
        var tenant = NewTenant();
        var request = Registration();
        switch (@case)
        {
            case "empty name": request.Name = ""; break;
            case "name with invalid characters": request.Name = "bad name/ü"; break;
            case "name longer than 128": request.Name = new string('n', 129); break;
            case "unknown type 99": request.Type = (WorkerType)99; break;
            case "unspecified type": request.Type = WorkerType.Unspecified; break;
            case "no capabilities": request.Capabilities.Clear(); break;
            case "invalid capability": request.Capabilities.Add("has space"); break;
            case "negative cpu": request.Metadata.Resources.Cpu = -1; break;
            case "negative memory_mb": request.Metadata.Resources.MemoryMb = -1; break;
            case "negative disk_mb": request.Metadata.Resources.DiskMb = -5; break;
            case "negative max_concurrent_tasks": request.Metadata.MaxConcurrentTasks = -1; break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }

        var status = await RefusedAsync(() => env.Registry.Registry(tenant).RegisterWorkerAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, field);
        Assert.Equal((0L, 0L, 0L, 0L, 0L), await RowsAsync(tenant));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_registration_with_several_invalid_fields_reports_them_all_in_one_answer()
    {
        var tenant = NewTenant();
        var request = Registration();
        request.Name = "";
        request.Type = WorkerType.Unspecified;
        request.Capabilities.Clear();
        request.Metadata.Resources.DiskMb = -5;

        var status = await RefusedAsync(() => env.Registry.Registry(tenant).RegisterWorkerAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        Assert.Equal(["capabilities", "metadata.resources.disk_mb", "name", "type"],
            status.BadRequest().FieldViolations.Select(v => v.Field).Order(StringComparer.Ordinal));
        Assert.Equal((0L, 0L, 0L, 0L, 0L), await RowsAsync(tenant));
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("malformed worker_id", "worker_id")]
    [InlineData("session_epoch 0", "session_epoch")]
    [InlineData("load 1.5", "load")]
    [InlineData("negative load", "load")]
    [InlineData("status DRAINING", "status")]
    [InlineData("status OFFLINE", "status")]
    [InlineData("unknown status 42", "status")]
    [InlineData("malformed running task id", "running_task_ids[1]")]
    public async Task An_invalid_heartbeat_is_refused_on_the_exact_field_and_changes_nothing(string @case, string field)
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var worker = await client.RegisterAsync(Registration());
        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Busy, Load = 0.5 };
        beat.RunningTaskIds.Add(Guid.NewGuid().ToString());
        switch (@case)
        {
            case "malformed worker_id": beat.WorkerId = "not-a-uuid"; break;
            case "session_epoch 0": beat.SessionEpoch = 0; break;
            case "load 1.5": beat.Load = 1.5; break;
            case "negative load": beat.Load = -0.1; break;
            case "status DRAINING": beat.Status = WorkerStatus.Draining; break;
            case "status OFFLINE": beat.Status = WorkerStatus.Offline; break;
            case "unknown status 42": beat.Status = (WorkerStatus)42; break;
            case "malformed running task id": beat.RunningTaskIds.Add("task-7"); break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }
        var rowsBefore = await RowsAsync(tenant);
        var rowVersion = await env.ScalarAsync<string>("SELECT xmin::text FROM workers WHERE id = @id", ("id", Guid.Parse(worker.Id)));
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        var mirrorBefore = await MirrorAsync(redis, tenant, worker.Id);

        var status = await RefusedAsync(() => client.HeartbeatAsync(beat).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, field);
        Assert.Equal(rowsBefore, await RowsAsync(tenant));
        Assert.Equal(rowVersion, await env.ScalarAsync<string>("SELECT xmin::text FROM workers WHERE id = @id", ("id", Guid.Parse(worker.Id))));
        Assert.Equal(mirrorBefore, await MirrorAsync(redis, tenant, worker.Id)); // status, running, load and beat_at untouched
        Assert.Equal("online", await env.ScalarAsync<string>("SELECT status FROM workers WHERE id = @id", ("id", Guid.Parse(worker.Id))));
    }

    private static async Task<string> MirrorAsync(ConnectionMultiplexer redis, string tenant, string id)
    {
        var fields = await redis.GetDatabase().HashGetAllAsync(WorkerMirror.WorkerKey(tenant, id));
        return string.Join(";", fields.OrderBy(f => (string)f.Name!, StringComparer.Ordinal).Select(f => $"{f.Name}={f.Value}"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_heartbeat_for_an_unknown_worker_id_is_not_found_and_writes_nothing()
    {
        var tenant = NewTenant();
        var unknown = Guid.NewGuid().ToString();

        var status = await RefusedAsync(() => env.Registry.Registry(tenant).HeartbeatAsync(
            new HeartbeatRequest { WorkerId = unknown, SessionEpoch = 1, Status = WorkerStatus.Online }).ResponseAsync, StatusCode.NotFound);

        Assert.Equal("WORKER_NOT_FOUND", status.ErrorInfo().Reason);
        Assert.Equal(unknown, status.ErrorInfo().Metadata["resource_id"]);
        Assert.Equal((0L, 0L, 0L, 0L, 0L), await RowsAsync(tenant));
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        Assert.False(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.WorkerKey(tenant, unknown)));
        Assert.False(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.AliveKey(tenant, unknown)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Registering_a_name_again_with_another_type_is_refused_and_changes_nothing()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var request = Registration(type: WorkerType.Orchestrator, capabilities: ["build.run"]);
        var worker = await client.RegisterAsync(request);
        var id = Guid.Parse(worker.Id);
        var rowsBefore = await RowsAsync(tenant);
        var rowBefore = await env.ScalarAsync<string>(
            "SELECT concat_ws('|', xmin::text, session_epoch, type, array_to_string(capabilities, ','), updated_at) FROM workers WHERE id = @id", ("id", id));

        request.Type = WorkerType.CiCd;
        request.Capabilities.Add("deploy.run");
        var status = await RefusedAsync(() => client.RegisterWorkerAsync(request).ResponseAsync, StatusCode.FailedPrecondition);

        var info = status.ErrorInfo();
        Assert.Equal("WORKER_TYPE_MISMATCH", info.Reason);
        Assert.Equal(worker.Id, info.Metadata["worker_id"]);
        Assert.Equal("orchestrator", info.Metadata["registered_type"]);
        Assert.Equal(rowsBefore, await RowsAsync(tenant));
        Assert.Equal(rowBefore, await env.ScalarAsync<string>(
            "SELECT concat_ws('|', xmin::text, session_epoch, type, array_to_string(capabilities, ','), updated_at) FROM workers WHERE id = @id", ("id", id)));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT session_epoch FROM workers WHERE id = @id", ("id", id)));
        await client.BeatAsync(worker); // the first session is still the current one
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("page_size 1001", "page_size")]
    [InlineData("negative page_size", "page_size")]
    [InlineData("unknown status 99", "status")]
    [InlineData("unknown type 99", "type")]
    [InlineData("invalid capability", "capability")]
    [InlineData("page_token not base64", "page_token")]
    public async Task An_invalid_worker_listing_is_refused_on_the_exact_field(string @case, string field)
    {
        var request = new ListWorkersRequest();
        switch (@case)
        {
            case "page_size 1001": request.PageSize = 1001; break;
            case "negative page_size": request.PageSize = -1; break;
            case "unknown status 99": request.Status = (WorkerStatus)99; break;
            case "unknown type 99": request.Type = (WorkerType)99; break;
            case "invalid capability": request.Capability = "no spaces allowed"; break;
            case "page_token not base64": request.PageToken = "%%%"; break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }

        var status = await RefusedAsync(() => env.Registry.Registry(NewTenant()).ListWorkersAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, field);
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("empty outcome_id", "outcome.outcome_id")]
    [InlineData("outcome_id longer than 128", "outcome.outcome_id")]
    [InlineData("negative duration", "outcome.duration")]
    [InlineData("malformed task_id", "outcome.task_id")]
    [InlineData("invalid task_type", "outcome.task_type")]
    [InlineData("other worker_id in the outcome", "outcome.worker_id")]
    [InlineData("missing outcome", "outcome")]
    public async Task An_invalid_outcome_is_refused_on_the_exact_field_and_records_nothing(string @case, string field)
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var worker = await client.RegisterAsync(Registration());
        var request = new RecordTaskOutcomeRequest
        {
            WorkerId = worker.Id,
            Outcome = new TaskOutcome
            {
                OutcomeId = Guid.NewGuid().ToString(), TaskId = Guid.NewGuid().ToString(), TaskType = "email.send", Success = false,
                Duration = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(20)),
            },
        };
        switch (@case)
        {
            case "empty outcome_id": request.Outcome.OutcomeId = ""; break;
            case "outcome_id longer than 128": request.Outcome.OutcomeId = new string('o', 129); break;
            case "negative duration": request.Outcome.Duration = Duration.FromTimeSpan(TimeSpan.FromSeconds(-1)); break;
            case "malformed task_id": request.Outcome.TaskId = "task-1"; break;
            case "invalid task_type": request.Outcome.TaskType = "has space"; break;
            case "other worker_id in the outcome": request.Outcome.WorkerId = Guid.NewGuid().ToString(); break;
            case "missing outcome": request.Outcome = null; break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }
        var rowsBefore = await RowsAsync(tenant);
        var breakerVersion = await env.ScalarAsync<string>("SELECT xmin::text FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(worker.Id)));

        var status = await RefusedAsync(() => client.RecordTaskOutcomeAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, field);
        Assert.Equal(rowsBefore, await RowsAsync(tenant));
        Assert.Equal(breakerVersion, await env.ScalarAsync<string>("SELECT xmin::text FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(worker.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_batch_with_one_invalid_outcome_records_none_of_them()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var worker = await client.RegisterAsync(Registration());
        var request = new RecordTaskOutcomesRequest();
        for (var i = 0; i < 3; i++)
        {
            request.Outcomes.Add(new TaskOutcome
            {
                OutcomeId = $"o-{i}", WorkerId = worker.Id, TaskId = Guid.NewGuid().ToString(), TaskType = "email.send", Success = false,
            });
        }
        request.Outcomes[2].Duration = new Duration { Seconds = -5 };
        var rowsBefore = await RowsAsync(tenant);

        var status = await RefusedAsync(() => client.RecordTaskOutcomesAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, "outcomes[2].duration");
        Assert.Equal(rowsBefore, await RowsAsync(tenant));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE tenant_id = @t", ("t", tenant)));
        AssertViolation(await RefusedAsync(() => client.RecordTaskOutcomesAsync(new RecordTaskOutcomesRequest()).ResponseAsync, StatusCode.InvalidArgument),
            "outcomes");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_outcome_for_an_unknown_worker_is_not_found_and_records_nothing()
    {
        var tenant = NewTenant();
        var unknown = Guid.NewGuid().ToString();
        var request = new RecordTaskOutcomeRequest
        {
            WorkerId = unknown,
            Outcome = new TaskOutcome { OutcomeId = "o-1", TaskId = Guid.NewGuid().ToString(), TaskType = "email.send" },
        };

        var status = await RefusedAsync(() => env.Registry.Registry(tenant).RecordTaskOutcomeAsync(request).ResponseAsync, StatusCode.NotFound);

        Assert.Equal("WORKER_NOT_FOUND", status.ErrorInfo().Reason);
        Assert.Equal((0L, 0L, 0L, 0L, 0L), await RowsAsync(tenant));
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("not a position", "after_event_id")]
    [InlineData("12", "after_event_id")]
    [InlineData("-5-3", "after_event_id")]
    [InlineData("7--1", "after_event_id")]
    [InlineData("malformed worker_id", "worker_id")]
    [InlineData("unspecified event type", "event_types[0]")]
    public async Task An_invalid_watch_is_refused_on_the_exact_field(string @case, string field)
    {
        var request = new WatchWorkersRequest();
        switch (@case)
        {
            case "malformed worker_id": request.WorkerId = "w-1"; break;
            case "unspecified event type": request.EventTypes.Add(WorkerEventType.Unspecified); break;
            default: request.AfterEventId = @case; break;
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var watch = env.Registry.Registry(NewTenant()).WatchWorkers(request, cancellationToken: timeout.Token);

        var status = await RefusedAsync(() => watch.ResponseStream.MoveNext(timeout.Token), StatusCode.InvalidArgument);

        AssertViolation(status, field);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Worker_ids_that_are_not_uuids_are_refused_by_every_single_worker_call()
    {
        var client = env.Registry.Registry(NewTenant());
        const string bad = "worker-1";
        AssertViolation(await RefusedAsync(() => client.GetWorkerAsync(new GetWorkerRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.ResetCircuitBreakerAsync(new ResetCircuitBreakerRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.RecalculateWorkerStatsAsync(new RecalculateWorkerStatsRequest { WorkerId = bad }).ResponseAsync, StatusCode.InvalidArgument), "worker_id");
        AssertViolation(await RefusedAsync(() => client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { PageToken = bad }).ResponseAsync, StatusCode.InvalidArgument), "page_token");
        AssertViolation(await RefusedAsync(() => client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = Guid.NewGuid().ToString(), Reason = new string('r', 1025) }).ResponseAsync,
            StatusCode.InvalidArgument), "reason");
    }
}
