using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Reflection.V1Alpha;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>The RegistryService contract end to end: tenancy, listing, live fields, life cycle, events, Redis loss, reflection and REST.</summary>
public sealed class RegistryApiTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private static string NewTenant() => $"api-{Guid.NewGuid():N}"[..20];

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task ListActiveTenants_names_every_tenant_with_registered_workers_whatever_tenant_asks()
    {
        var live = $"live-{Guid.NewGuid():N}"[..20];
        var gone = $"gone-{Guid.NewGuid():N}"[..20];
        await env.Registry.Registry(live).RegisterAsync(Registration());
        var leaving = env.Registry.Registry(gone);
        var worker = await leaving.RegisterAsync(Registration());
        await leaving.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });

        var tenants = (await env.Registry.Registry("someone-else").ListActiveTenantsAsync(new ListActiveTenantsRequest())).Tenants.ToList();

        Assert.Contains(live, tenants);
        Assert.DoesNotContain(gone, tenants);
        Assert.DoesNotContain("someone-else", tenants);
        Assert.Equal(tenants.Distinct().Order(StringComparer.Ordinal), tenants);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_of_one_tenant_is_invisible_to_another()
    {
        var acme = env.Registry.Registry("acme");
        var globex = env.Registry.Registry("globex");
        var name = $"shared-{Guid.NewGuid():N}"[..20];
        var mine = await acme.RegisterAsync(Registration(name));
        var id = Guid.Parse(mine.Id);

        async Task NotFound<T>(Func<Task<T>> call) =>
            Assert.Equal("WORKER_NOT_FOUND", (await RefusedAsync(call, StatusCode.NotFound)).ErrorInfo().Reason);

        await NotFound(() => globex.GetWorkerAsync(new GetWorkerRequest { WorkerId = mine.Id }).ResponseAsync);
        await NotFound(() => globex.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = mine.Id }).ResponseAsync);
        await NotFound(() => globex.HeartbeatAsync(new HeartbeatRequest { WorkerId = mine.Id, SessionEpoch = mine.SessionEpoch }).ResponseAsync);
        await NotFound(() => globex.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = mine.Id }).ResponseAsync);
        await NotFound(() => globex.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = mine.Id }).ResponseAsync);
        await NotFound(() => globex.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = mine.Id }).ResponseAsync);
        await NotFound(() => globex.ResetCircuitBreakerAsync(new ResetCircuitBreakerRequest { WorkerId = mine.Id }).ResponseAsync);
        await NotFound(() => globex.RecordTaskOutcomeAsync(new RecordTaskOutcomeRequest
        {
            WorkerId = mine.Id, Outcome = new TaskOutcome { OutcomeId = "x", TaskId = Guid.NewGuid().ToString(), TaskType = "email.send" },
        }).ResponseAsync);

        // The same name is a different worker in the other tenant.
        var theirs = await globex.RegisterWorkerAsync(Registration(name));
        Assert.True(theirs.Created);
        Assert.NotEqual(mine.Id, theirs.Worker.Id);
        Assert.Equal("globex", theirs.Worker.TenantId);
        var listed = (await globex.ListWorkersAsync(new ListWorkersRequest { PageSize = 1000 })).Workers.Select(w => w.Id).ToList();
        Assert.DoesNotContain(mine.Id, listed);
        Assert.Contains(theirs.Worker.Id, listed);
        Assert.DoesNotContain(theirs.Worker.Id, (await acme.ListWorkersAsync(new ListWorkersRequest { PageSize = 1000 })).Workers.Select(w => w.Id));

        // Nothing the other tenant tried changed the worker: still one session, not draining, not deregistered.
        Assert.Equal("online|1|t", await env.ScalarAsync<string>(
            "SELECT concat_ws('|', status, session_epoch, deregistered_at IS NULL) FROM workers WHERE id = @id", ("id", id)));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM worker_events WHERE worker_id = @id", ("id", id)));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE worker_id = @id", ("id", id)));
        Assert.Equal("acme", (await acme.GetWorkerAsync(new GetWorkerRequest { WorkerId = mine.Id })).Worker.TenantId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Listing_workers_filters_by_status_capability_and_type_and_pages_by_name()
    {
        var client = env.Registry.Registry(NewTenant());
        var workers = new[]
        {
            await client.RegisterAsync(Registration("w1-orch", WorkerType.Orchestrator, "build.run")),
            await client.RegisterAsync(Registration("w2-std", WorkerType.Standalone, "email.send")),
            await client.RegisterAsync(Registration("w3-std", WorkerType.Standalone, "email.send", "build.run")),
            await client.RegisterAsync(Registration("w4-cicd", WorkerType.CiCd, "deploy.run")),
            await client.RegisterAsync(Registration("w5-std", WorkerType.Standalone, "email.send")),
        };
        var beating = workers.Select(w => client.KeepBeating(w)).ToList();
        try
        {
            await client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = workers[4].Id });

            async Task<string[]> Names(ListWorkersRequest request) =>
                (await client.ListWorkersAsync(request)).Workers.Select(w => w.Name).ToArray();

            Assert.Equal(["w5-std"], await Names(new ListWorkersRequest { Status = WorkerStatus.Draining }));
            Assert.Equal(["w1-orch", "w2-std", "w3-std", "w4-cicd"], await Names(new ListWorkersRequest { Status = WorkerStatus.Online }));
            Assert.Empty(await Names(new ListWorkersRequest { Status = WorkerStatus.Offline }));
            Assert.Equal(["w2-std", "w3-std", "w5-std"], await Names(new ListWorkersRequest { Capability = "email.send" }));
            Assert.Equal(["w1-orch", "w3-std"], await Names(new ListWorkersRequest { Capability = "build.run" }));
            Assert.Empty(await Names(new ListWorkersRequest { Capability = "nobody.runs.this" }));
            Assert.Equal(["w2-std", "w3-std", "w5-std"], await Names(new ListWorkersRequest { Type = WorkerType.Standalone }));
            Assert.Equal(["w4-cicd"], await Names(new ListWorkersRequest { Type = WorkerType.CiCd }));
            Assert.Equal(["w3-std"], await Names(new ListWorkersRequest { Type = WorkerType.Standalone, Capability = "build.run" }));
            Assert.Equal(["w2-std", "w3-std"], await Names(new ListWorkersRequest { Type = WorkerType.Standalone, Status = WorkerStatus.Online }));

            var pages = new List<string[]>();
            var token = "";
            do
            {
                var page = await client.ListWorkersAsync(new ListWorkersRequest { PageSize = 2, PageToken = token });
                pages.Add(page.Workers.Select(w => w.Name).ToArray());
                token = page.NextPageToken;
                Assert.True(pages.Count <= 5);
            }
            while (token.Length > 0);
            Assert.Equal([["w1-orch", "w2-std"], ["w3-std", "w4-cicd"], ["w5-std"]], pages);

            // Paging combines with filters.
            var first = await client.ListWorkersAsync(new ListWorkersRequest { Type = WorkerType.Standalone, PageSize = 2 });
            Assert.Equal(["w2-std", "w3-std"], first.Workers.Select(w => w.Name));
            var second = await client.ListWorkersAsync(new ListWorkersRequest { Type = WorkerType.Standalone, PageSize = 2, PageToken = first.NextPageToken });
            Assert.Equal(["w5-std"], second.Workers.Select(w => w.Name));
            Assert.Empty(second.NextPageToken);
        }
        finally
        {
            foreach (var b in beating)
            {
                await b.DisposeAsync();
            }
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task GetWorker_shows_the_live_fields_of_the_last_heartbeat_from_redis()
    {
        // Beats reach PostgreSQL only at the (here: 10 minute) flush, so what GetWorker shows comes from Redis.
        var quiet = await env.StartRegistryAsync(new Dictionary<string, string?> { ["Registry:HeartbeatFlushInterval"] = "00:10:00" });
        var client = quiet.Registry(NewTenant());
        var worker = await client.RegisterAsync(Registration());
        var running = new[] { Guid.NewGuid().ToString(), Guid.NewGuid().ToString() };
        await Task.Delay(50);
        var before = DateTime.UtcNow.AddMilliseconds(-5);

        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Busy, Load = 0.7 };
        beat.RunningTaskIds.AddRange(running);
        var answer = await client.HeartbeatAsync(beat);
        var after = DateTime.UtcNow.AddMilliseconds(5);

        Assert.Equal(WorkerStatus.Busy, answer.Status);
        Assert.InRange(answer.ExpiresAt.ToDateTime(), before.AddSeconds(3), after.AddSeconds(3));
        var shown = (await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = worker.Id })).Worker;
        Assert.Equal(running, shown.RunningTaskIds);
        Assert.Equal(WorkerStatus.Busy, shown.Status);
        Assert.Equal(0.7, shown.Load);
        Assert.InRange(shown.LastHeartbeatAt.ToDateTime(), before, after);
        Assert.True(shown.LastHeartbeatAt.ToDateTime() > worker.LastHeartbeatAt.ToDateTime());
        Assert.Equal(worker.SessionEpoch, shown.SessionEpoch);
        Assert.Equal(worker.Metadata, shown.Metadata);

        // PostgreSQL still holds the registration's copy.
        var id = Guid.Parse(worker.Id);
        Assert.Equal("online|0", await env.ScalarAsync<string>(
            "SELECT concat_ws('|', status, cardinality(running_task_ids)) FROM workers WHERE id = @id", ("id", id)));
        await quiet.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_deregistered_worker_is_refused_heartbeats_and_deregistering_twice_writes_one_event()
    {
        var client = env.Registry.Registry(NewTenant());
        var request = Registration();
        var worker = await client.RegisterAsync(request);
        await client.BeatAsync(worker, Guid.NewGuid().ToString());
        var id = Guid.Parse(worker.Id);

        var first = (await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id })).Worker;
        var second = (await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id })).Worker;

        Assert.Equal(WorkerStatus.Offline, first.Status);
        Assert.NotNull(first.DeregisteredAt);
        Assert.Empty(first.RunningTaskIds);
        Assert.Equal(first.DeregisteredAt, second.DeregisteredAt);
        Assert.Equal(1, await env.CountEventsAsync(id, "deregistered"));
        var refused = await RefusedAsync(() => client.BeatAsync(worker), StatusCode.FailedPrecondition);
        Assert.Equal("WORKER_DEREGISTERED", refused.ErrorInfo().Reason);
        var drain = await RefusedAsync(() => client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = worker.Id }).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("WORKER_DEREGISTERED", drain.ErrorInfo().Reason);
        Assert.Equal(WorkerStatus.Offline, (await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = worker.Id })).Worker.Status);
        Assert.Equal("offline", await env.ScalarAsync<string>("SELECT status FROM workers WHERE id = @id", ("id", id)));
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString))
        {
            Assert.Equal("1", (string?)await redis.GetDatabase().HashGetAsync(WorkerMirror.WorkerKey(worker.TenantId, worker.Id), "deregistered"));
            Assert.False(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.AliveKey(worker.TenantId, worker.Id)));
        }

        // Deregistered is not lost: no lapse is announced for it later.
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.Equal(0, await env.CountEventsAsync(id, "lost"));

        // Registering the name again brings the same worker back in a new session.
        var back = await client.RegisterAsync(request);
        Assert.Equal(worker.Id, back.Id);
        Assert.Null(back.DeregisteredAt);
        Assert.Equal(worker.SessionEpoch + 1, back.SessionEpoch);
        await client.BeatAsync(back);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Watching_from_an_event_id_resumes_with_the_later_events_only()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var request = Registration();
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var watch = client.WatchWorkers(new WatchWorkersRequest(), cancellationToken: cancel.Token);

        // "From now on" starts when the server runs the call: register until the stream shows a registration.
        var seen = new List<WorkerEvent>();
        Worker worker;
        var next = watch.ResponseStream.MoveNext(cancel.Token);
        while (true)
        {
            worker = await client.RegisterAsync(request);
            if (await Task.WhenAny(next, Task.Delay(1000, cancel.Token)) == next)
            {
                break;
            }
        }
        Assert.True(await next);
        seen.Add(watch.ResponseStream.Current.Event);
        await client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = worker.Id, Reason = "deploy" });
        await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });
        while (seen[^1].Type != WorkerEventType.Deregistered)
        {
            Assert.True(await watch.ResponseStream.MoveNext(cancel.Token));
            seen.Add(watch.ResponseStream.Current.Event);
        }
        Assert.Equal(WorkerEventType.Registered, seen[0].Type);
        Assert.Equal([WorkerEventType.Draining, WorkerEventType.Deregistered], seen.TakeLast(2).Select(e => e.Type));
        Assert.Equal("deploy", seen[^2].Message);

        using var resumed = client.WatchWorkers(new WatchWorkersRequest { AfterEventId = seen[0].EventId }, cancellationToken: cancel.Token);
        var replayed = new List<WorkerEvent>();
        for (var i = 1; i < seen.Count; i++)
        {
            Assert.True(await resumed.ResponseStream.MoveNext(cancel.Token));
            replayed.Add(resumed.ResponseStream.Current.Event);
        }
        Assert.Equal(seen.Skip(1), replayed);
        await AssertNoEventWithinAsync(resumed, TimeSpan.FromSeconds(1));

        // Filters apply to resumed streams too; resuming after the last event gives nothing.
        using var drains = client.WatchWorkers(new WatchWorkersRequest { AfterEventId = seen[0].EventId, EventTypes = { WorkerEventType.Draining } },
            cancellationToken: cancel.Token);
        Assert.True(await drains.ResponseStream.MoveNext(cancel.Token));
        Assert.Equal(seen[^2], drains.ResponseStream.Current.Event);
        await AssertNoEventWithinAsync(drains, TimeSpan.FromSeconds(1));
        using var tail = client.WatchWorkers(new WatchWorkersRequest { AfterEventId = seen[^1].EventId }, cancellationToken: cancel.Token);
        await AssertNoEventWithinAsync(tail, TimeSpan.FromSeconds(1));
    }

    private static async Task AssertNoEventWithinAsync(AsyncServerStreamingCall<WatchWorkersResponse> watch, TimeSpan window)
    {
        using var quiet = new CancellationTokenSource(window);
        var ex = await Assert.ThrowsAsync<RpcException>(() => watch.ResponseStream.MoveNext(quiet.Token));
        Assert.Equal(StatusCode.Cancelled, ex.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task After_redis_loses_its_data_heartbeats_still_succeed_and_a_beating_worker_is_not_announced_lost()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var worker = await client.RegisterAsync(Registration());
        var id = Guid.Parse(worker.Id);
        var silent = await client.RegisterAsync(Registration()); // registered, then never beats

        // A worker that beats every 300 ms and shrugs off failed beats (Redis is briefly gone).
        using var stop = new CancellationTokenSource();
        var okBeats = 0;
        var beating = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await client.BeatAsync(worker);
                    Interlocked.Increment(ref okBeats);
                }
                catch (RpcException)
                {
                }
                try
                {
                    await Task.Delay(300, stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
        try
        {
            Assert.True(await EventuallyAsync(() => Task.FromResult(Volatile.Read(ref okBeats) >= 2), TimeSpan.FromSeconds(5)));

            await env.Redis.RestartAsync();
            await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
            Assert.False(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.WorkerKey(tenant, worker.Id)));
            var beatsAtRestart = Volatile.Read(ref okBeats);

            // Once the registry's connection is back, the next beat succeeds and rewrites the mirror from PostgreSQL.
            Assert.True(await EventuallyAsync(() => Task.FromResult(Volatile.Read(ref okBeats) > beatsAtRestart), TimeSpan.FromSeconds(10)));
            var answer = await client.BeatAsync(worker);
            Assert.Equal(WorkerStatus.Online, answer.Status);
            var mirrored = await WorkerMirror.ReadEligibilityAsync(redis.GetDatabase(), tenant, worker.Id);
            Assert.NotNull(mirrored);
            Assert.Null(mirrored.Refusal(DateTimeOffset.UtcNow));
            Assert.Equal(worker.SessionEpoch, (long)await redis.GetDatabase().HashGetAsync(WorkerMirror.WorkerKey(tenant, worker.Id), "epoch"));
            Assert.True(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.AliveKey(tenant, worker.Id)));

            // Keep beating well past the TTL and a few reconciliations: never announced lost.
            await Task.Delay(TimeSpan.FromSeconds(5));
            Assert.Equal(0, await env.CountEventsAsync(id, "lost"));
            Assert.Equal("online", await env.ScalarAsync<string>("SELECT status FROM workers WHERE id = @id", ("id", id)));
            Assert.Equal(WorkerStatus.Online, (await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = worker.Id })).Worker.Status);

            // A worker that really is gone is still announced lost (once), though Redis forgot it.
            Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(silent.Id), "lost") > 0, TimeSpan.FromSeconds(10)));
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            Assert.Equal(1, await env.CountEventsAsync(Guid.Parse(silent.Id), "lost"));
            Assert.Equal(0, await env.CountEventsAsync(id, "lost"));
        }
        finally
        {
            await stop.CancelAsync();
            await beating;
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Server_reflection_lists_the_registry_service()
    {
        var reflection = new ServerReflection.ServerReflectionClient(env.Registry.Channel);
        using var call = reflection.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "*" });
        await call.RequestStream.CompleteAsync();

        Assert.True(await call.ResponseStream.MoveNext());
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("lifeline.registry.v1.RegistryService", services);
        Assert.Contains("grpc.health.v1.Health", services);
    }

    private HttpClient Rest() => new()
    {
        BaseAddress = env.Registry.Address,
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
    };

    /// <summary>A request message of its own: DefaultRequestVersion applies only to messages HttpClient creates itself.</summary>
    private static HttpRequestMessage RestRequest(HttpMethod method, string path, string tenant, object? body = null)
    {
        var request = new HttpRequestMessage(method, path)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = body is null ? null : JsonContent.Create(body),
        };
        var identity = TestIdentity.Header(tenant);
        request.Headers.Add(identity.Key, identity.Value);
        return request;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_registration_returns_the_worker_and_a_bad_one_returns_400_with_field_violations()
    {
        using var http = Rest();
        var tenant = NewTenant();
        var name = $"rest-{Guid.NewGuid():N}"[..16];

        using var ok = RestRequest(HttpMethod.Post, "/api/v1/workers", tenant,
            new { name, type = "WORKER_TYPE_CI_CD", capabilities = new[] { "deploy.run" } });
        using var created = await http.SendAsync(ok);
        var body = await created.Content.ReadAsStringAsync();
        Assert.True(created.StatusCode == HttpStatusCode.OK, body);
        using var json = JsonDocument.Parse(body);
        var workerJson = json.RootElement.GetProperty("worker");
        var id = Guid.Parse(workerJson.GetProperty("id").GetString()!);
        Assert.True(json.RootElement.GetProperty("created").GetBoolean());
        Assert.Equal("WORKER_TYPE_CI_CD", workerJson.GetProperty("type").GetString());
        Assert.Equal("1s", json.RootElement.GetProperty("heartbeatInterval").GetString());
        Assert.Equal($"{tenant}|{name}|ci_cd", await env.ScalarAsync<string>(
            "SELECT concat_ws('|', tenant_id, name, type) FROM workers WHERE id = @id", ("id", id)));

        using var bad = RestRequest(HttpMethod.Post, "/api/v1/workers", tenant,
            new { name = "bad name!", type = "WORKER_TYPE_STANDALONE", capabilities = Array.Empty<string>() });
        using var refused = await http.SendAsync(bad);
        var error = await refused.Content.ReadAsStringAsync();
        Assert.True(refused.StatusCode == HttpStatusCode.BadRequest, error);
        using var errorJson = JsonDocument.Parse(error);
        Assert.Equal(3, errorJson.RootElement.GetProperty("code").GetInt32());
        var badRequest = errorJson.RootElement.GetProperty("details").EnumerateArray()
            .Single(d => d.GetProperty("@type").GetString() == "type.googleapis.com/google.rpc.BadRequest");
        Assert.Equal(["capabilities", "name"], badRequest.GetProperty("fieldViolations").EnumerateArray()
            .Select(v => v.GetProperty("field").GetString()!).Order(StringComparer.Ordinal));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM workers WHERE tenant_id = @t", ("t", tenant)));

        // GET routes too: the worker by id, and NOT_FOUND as 404.
        using var get = RestRequest(HttpMethod.Get, $"/api/v1/workers/{id}", tenant);
        using var fetched = await http.SendAsync(get);
        Assert.Equal(HttpStatusCode.OK, fetched.StatusCode);
        using var other = RestRequest(HttpMethod.Get, $"/api/v1/workers/{id}", "default"); // another tenant: not there
        using var missing = await http.SendAsync(other);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using var anonymous = await http.GetAsync($"/api/v1/workers/{id}"); // no identity at all: refused
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
    }
}
