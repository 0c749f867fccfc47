using Grpc.Core;
using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.V1;
using Microsoft.Extensions.DependencyInjection;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

public sealed class LivenessTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_silent_worker_is_announced_lost_exactly_once_across_two_instances_and_recovered_when_it_beats_again()
    {
        var second = await env.StartRegistryAsync();
        var client = env.Registry.Registry();
        var worker = await client.RegisterAsync(Registration());
        var id = Guid.Parse(worker.Id);
        var running = new[] { Guid.NewGuid().ToString(), Guid.NewGuid().ToString() };

        // Watch from the other instance: events are one log, whichever instance wrote them.
        using var watch = second.Registry().WatchWorkers(new WatchWorkersRequest { WorkerId = worker.Id });
        await client.BeatAsync(worker, running);
        var lastBeat = DateTime.UtcNow;

        // TTL is 3 s (interval 1 s); lost must be announced within TTL + one interval.
        Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(id, "lost") > 0, TimeSpan.FromSeconds(8)));
        var detectedAfter = DateTime.UtcNow - lastBeat;
        Assert.InRange(detectedAfter, TimeSpan.FromSeconds(2.9), TimeSpan.FromSeconds(4.5));
        await Task.Delay(1500); // both instances keep looking; still one event
        Assert.Equal(1, await env.CountEventsAsync(id, "lost"));

        var lost = await NextEventAsync(watch, WorkerEventType.Lost);
        Assert.Equal(running.Order(), lost.RunningTaskIds.Order());
        Assert.Equal(WorkerStatus.Offline, (await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = worker.Id })).Worker.Status);

        await client.BeatAsync(worker);
        var recovered = await NextEventAsync(watch, WorkerEventType.Recovered);
        Assert.Equal(worker.Id, recovered.WorkerId);
        Assert.Equal(1, await env.CountEventsAsync(id, "recovered"));
        Assert.Equal("online", await env.ScalarAsync<string>("SELECT status FROM workers WHERE id = @id", ("id", id)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Many_silent_workers_are_each_lost_exactly_once_with_two_instances()
    {
        await env.StartRegistryAsync();
        var client = env.Registry.Registry();
        var workers = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => client.RegisterAsync(Registration())));
        var ids = workers.Select(w => Guid.Parse(w.Id)).ToArray();
        Assert.True(await EventuallyAsync(async () =>
            await env.ScalarAsync<long>("SELECT count(*) FROM worker_events WHERE event_type = 'lost' AND worker_id = ANY(@ids)", ("ids", ids)) == ids.Length,
            TimeSpan.FromSeconds(10)));
        await Task.Delay(1500);
        Assert.Equal(ids.Length, await env.ScalarAsync<long>(
            "SELECT count(*) FROM worker_events WHERE event_type = 'lost' AND worker_id = ANY(@ids)", ("ids", ids)));
        Assert.Equal(ids.Length, await env.ScalarAsync<long>(
            "SELECT count(DISTINCT worker_id) FROM worker_events WHERE event_type = 'lost' AND worker_id = ANY(@ids)", ("ids", ids)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Heartbeats_do_not_write_postgres_until_the_coalesced_flush()
    {
        var quiet = await env.StartRegistryAsync(new Dictionary<string, string?> { ["Registry:HeartbeatFlushInterval"] = "00:10:00" });
        var client = quiet.Registry();
        var workers = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => client.RegisterAsync(Registration())));
        var ids = workers.Select(w => Guid.Parse(w.Id)).ToArray();
        const string rowVersions = "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM workers WHERE id = ANY(@ids)";
        var before = await env.ScalarAsync<string>(rowVersions, ("ids", ids));

        for (var round = 0; round < 10; round++)
        {
            await Task.WhenAll(workers.Select(w => client.BeatAsync(w)));
        }
        Assert.Equal(before, await env.ScalarAsync<string>(rowVersions, ("ids", ids))); // 200 beats, no row written

        var written = await quiet.App.Services.GetRequiredService<HeartbeatRecorder>().FlushAsync(CancellationToken.None);
        Assert.Equal(ids.Length, written); // one statement for all of them
        Assert.NotEqual(before, await env.ScalarAsync<string>(rowVersions, ("ids", ids)));
        Assert.Equal(0L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM workers WHERE id = ANY(@ids) AND last_heartbeat_at < now() - interval '5 seconds'", ("ids", ids)));
        await quiet.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Registering_a_name_again_keeps_the_id_starts_a_new_session_and_fences_the_old_one()
    {
        var client = env.Registry.Registry();
        var request = Registration();
        var first = await client.RegisterWorkerAsync(request);
        var again = await client.RegisterWorkerAsync(request);

        Assert.True(first.Created);
        Assert.False(again.Created);
        Assert.Equal(first.Worker.Id, again.Worker.Id);
        Assert.Equal(first.Worker.SessionEpoch + 1, again.Worker.SessionEpoch);

        var stale = await RefusedAsync(() => client.BeatAsync(first.Worker), StatusCode.FailedPrecondition);
        Assert.Equal("STALE_SESSION", stale.ErrorInfo().Reason);
        await client.BeatAsync(again.Worker);

        request.Type = WorkerType.CiCd;
        var mismatch = await RefusedAsync(() => client.RegisterWorkerAsync(request).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("WORKER_TYPE_MISMATCH", mismatch.ErrorInfo().Reason);
        Assert.Equal(2, await env.ScalarAsync<long>("SELECT session_epoch FROM workers WHERE id = @id", ("id", Guid.Parse(first.Worker.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_registrations_of_one_name_give_one_worker_with_distinct_sessions()
    {
        var request = Registration();
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => env.Registry.Registry().RegisterWorkerAsync(request).ResponseAsync));

        Assert.Single(responses.Select(r => r.Worker.Id).Distinct());
        Assert.Equal(1, responses.Count(r => r.Created));
        Assert.Equal(12, responses.Select(r => r.Worker.SessionEpoch).Distinct().Count());
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM workers WHERE name = @n", ("n", request.Name)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Drain_reaches_a_heartbeat_stream_at_once_and_the_next_unary_beat_otherwise()
    {
        var client = env.Registry.Registry();
        var worker = await client.RegisterAsync(Registration());
        using var stream = client.HeartbeatStream();
        await stream.RequestStream.WriteAsync(new HeartbeatStreamRequest
        {
            Beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch },
        });
        Assert.True(await stream.ResponseStream.MoveNext());
        Assert.NotNull(stream.ResponseStream.Current.Ack);

        await client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = worker.Id, Reason = "deploy" });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.True(await stream.ResponseStream.MoveNext(timeout.Token));
        Assert.Equal("deploy", stream.ResponseStream.Current.Command.Drain.Reason);
        await stream.RequestStream.CompleteAsync();

        var other = await client.RegisterAsync(Registration());
        await client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = other.Id });
        var beat = await client.BeatAsync(other);
        Assert.Equal(WorkerStatus.Draining, beat.Status);
        Assert.NotNull(Assert.Single(beat.Commands).Drain);
        Assert.Empty((await client.BeatAsync(other)).Commands); // delivered once
    }

    private static async Task<WorkerEvent> NextEventAsync(AsyncServerStreamingCall<WatchWorkersResponse> watch, WorkerEventType type)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (await watch.ResponseStream.MoveNext(timeout.Token))
        {
            if (watch.ResponseStream.Current.Event.Type == type)
            {
                return watch.ResponseStream.Current.Event;
            }
        }
        throw new InvalidOperationException($"no {type} event");
    }
}
