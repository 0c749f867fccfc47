using System.Net;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Reflection.V1Alpha;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// What operators and tools see: server reflection, grpc.health.v1, the REST/JSON transcoding of the
/// contract, the WatchTasks event stream, queue statistics and paged task history.
/// </summary>
public sealed class ObservabilityTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private static readonly TimeSpan StreamTimeout = TimeSpan.FromSeconds(20);

    private QueueService.QueueServiceClient Client => env.Queue.Client();

    // ---- (a) server reflection ----

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Reflection_lists_the_services_and_serves_the_queue_contract()
    {
        var reflection = new ServerReflection.ServerReflectionClient(env.Queue.Channel);
        using var cts = new CancellationTokenSource(StreamTimeout);
        using var call = reflection.ServerReflectionInfo(cancellationToken: cts.Token);

        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" }, cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("lifeline.queue.v1.QueueService", services);
        Assert.Contains("grpc.health.v1.Health", services);
        Assert.Contains("grpc.reflection.v1alpha.ServerReflection", services);

        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "lifeline.queue.v1.QueueService" }, cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        var response = call.ResponseStream.Current;
        Assert.Equal(ServerReflectionResponse.MessageResponseOneofCase.FileDescriptorResponse, response.MessageResponseCase);
        var files = response.FileDescriptorResponse.FileDescriptorProto.Select(FileDescriptorProto.Parser.ParseFrom).ToList();
        var queueFile = Assert.Single(files, f => f.Package == "lifeline.queue.v1");
        Assert.Equal("lifeline/queue/v1/queue.proto", queueFile.Name);
        var service = Assert.Single(queueFile.Service);
        Assert.Equal("QueueService", service.Name);
        Assert.Contains(service.Method, m => m.Name == "LeaseTasks");
        Assert.Contains(service.Method, m => m.Name == "WatchTasks" && m.ServerStreaming);

        // An unknown symbol is answered with an error response on the stream, not a broken call.
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "no.such.Service" }, cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(ServerReflectionResponse.MessageResponseOneofCase.ErrorResponse, call.ResponseStream.Current.MessageResponseCase);
        await call.RequestStream.CompleteAsync();
    }

    // ---- (b) grpc.health.v1 ----

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Health_check_reports_serving()
    {
        var health = new Health.HealthClient(env.Queue.Channel);
        var response = await health.CheckAsync(new HealthCheckRequest { Service = "" });
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, response.Status);
    }

    // ---- (c) REST/JSON transcoding ----

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_enqueue_and_get_round_trip_through_json_transcoding()
    {
        using var http = RestClient();
        var type = NewType("obs.rest");
        using var body = JsonBody(new { task = new { type, payload = """{"a":1}""", priority = 7 } });

        using var created = await http.PostAsync("/api/v1/tasks", body);
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        using var createdJson = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
        Assert.True(createdJson.RootElement.GetProperty("created").GetBoolean());
        var id = createdJson.RootElement.GetProperty("task").GetProperty("id").GetString()!;
        Assert.True(Guid.TryParse(id, out _));

        // In the store, for the default tenant, exactly as sent.
        Assert.Equal("pending", await env.StatusAsync(id));
        Assert.Equal(type, await env.ScalarAsync<string>("SELECT type FROM tasks WHERE id = @id", ("id", Guid.Parse(id))));
        Assert.Equal("default", await env.ScalarAsync<string>("SELECT tenant_id FROM tasks WHERE id = @id", ("id", Guid.Parse(id))));
        Assert.Equal(1, await env.ScalarAsync<int>("SELECT (payload->>'a')::int FROM tasks WHERE id = @id", ("id", Guid.Parse(id))));

        using var got = await http.GetAsync($"/api/v1/tasks/{id}");
        Assert.Equal(HttpStatusCode.OK, got.StatusCode);
        using var gotJson = JsonDocument.Parse(await got.Content.ReadAsStringAsync());
        var task = gotJson.RootElement.GetProperty("task");
        Assert.Equal(id, task.GetProperty("id").GetString());
        Assert.Equal(type, task.GetProperty("type").GetString());
        Assert.Equal("TASK_STATUS_PENDING", task.GetProperty("status").GetString());
        Assert.Equal(7, task.GetProperty("priority").GetInt32());
        using var payload = JsonDocument.Parse(task.GetProperty("payload").GetString()!);
        Assert.Equal(1, payload.RootElement.GetProperty("a").GetInt32());

        // The same task over gRPC.
        Assert.Equal(type, (await Client.GetTaskAsync(new GetTaskRequest { TaskId = id })).Task.Type);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_bad_input_is_400_with_field_violations_and_writes_nothing()
    {
        using var http = RestClient();
        var before = await env.CountRowsAsync();
        using var body = JsonBody(new { task = new { type = "", payload = "[1]" } });

        using var response = await http.PostAsync("/api/v1/tasks", body);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("fieldViolations", text, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(text);
        var fields = json.RootElement.GetProperty("details").EnumerateArray()
            .Where(d => d.TryGetProperty("fieldViolations", out _))
            .SelectMany(d => d.GetProperty("fieldViolations").EnumerateArray())
            .Select(v => v.GetProperty("field").GetString())
            .ToList();
        Assert.Contains("task.type", fields);
        Assert.Contains("task.payload", fields);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_unknown_id_is_404_and_malformed_id_is_400()
    {
        using var http = RestClient();

        using var unknown = await http.GetAsync($"/api/v1/tasks/{Guid.NewGuid()}");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("TASK_NOT_FOUND", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var malformed = await http.GetAsync("/api/v1/tasks/not-a-uuid");
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.Contains("task_id", await malformed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    // ---- (d) WatchTasks ----

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Watch_delivers_enqueued_leased_completed_in_order_and_resumes_after_an_event_id()
    {
        var type = NewType("obs.watch");
        var probeType = NewType("obs.probe");
        TaskEvent first;
        V1.Task task;
        await using (var watch = Watch.Start(Client, new WatchTasksRequest { TaskTypes = { type, probeType } }))
        {
            await WaitUntilLiveAsync(watch, probeType);

            task = await Client.EnqueueAsync(Spec(type));
            var leased = Assert.Single(await Client.LeaseAsync("watcher", type));
            await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = "1" });

            var events = await watch.ReadAsync(3, e => e.TaskType == type);
            Assert.Equal(["enqueued", "leased", "completed"], events.Select(e => e.EventType));
            Assert.All(events, e => Assert.Equal(task.Id, e.TaskId));
            Assert.Equal([TaskStatus.Pending, TaskStatus.Assigned, TaskStatus.Completed], events.Select(e => e.ToStatus));
            Assert.Equal("watcher", events[1].WorkerId);
            Assert.Equal(leased.FencingToken, events[1].FencingToken);
            Assert.Equal(3, events.Select(e => e.EventId).Distinct().Count());
            first = events[0];

            // The stream carries exactly what the store recorded, in the same order.
            var history = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events;
            Assert.Equal(history.Select(e => e.EventId), events.Select(e => e.EventId));
        }

        // Resuming after the first event yields the later ones, without the first.
        await using (var resumed = Watch.Start(Client, new WatchTasksRequest { TaskTypes = { type }, AfterEventId = first.EventId }))
        {
            var later = await resumed.ReadAsync(2, _ => true);
            Assert.Equal(["leased", "completed"], later.Select(e => e.EventType));
            Assert.All(later, e => Assert.Equal(task.Id, e.TaskId));
            Assert.Null(await resumed.TryNextAsync(TimeSpan.FromMilliseconds(500)));
        }

        // Filters combine: only the completion of this task.
        await using (var completions = Watch.Start(Client, new WatchTasksRequest
        {
            TaskId = task.Id, EventTypes = { "completed" }, AfterEventId = first.EventId,
        }))
        {
            var only = Assert.Single(await completions.ReadAsync(1, _ => true));
            Assert.Equal("completed", only.EventType);
            Assert.Null(await completions.TryNextAsync(TimeSpan.FromMilliseconds(500)));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Watch_with_a_bad_filter_is_refused()
    {
        var status = await RefusedAsync(async () =>
        {
            using var call = Client.WatchTasks(new WatchTasksRequest { EventTypes = { "exploded" }, AfterEventId = "nope" });
            return await call.ResponseStream.MoveNext();
        }, StatusCode.InvalidArgument);
        Assert.Equal(["after_event_id", "event_types[0]"], status.BadRequest().FieldViolations.Select(v => v.Field).Order(StringComparer.Ordinal));
    }

    // ---- (e) queue statistics ----

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Queue_stats_count_tasks_per_status_and_age_the_oldest_ready_task()
    {
        var type = NewType("obs.stats");
        var ids = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            ids.Add((await Client.EnqueueAsync(Spec(type))).Id);
        }
        var leased = await Client.LeaseAsync("stats-worker", type, max: 2, leaseSeconds: 600); // the two oldest
        Assert.Equal(ids.Take(2), leased.Select(t => t.Id));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = ids[0], FencingToken = leased[0].FencingToken });
        await Client.CancelTaskAsync(new CancelTaskRequest { TaskId = ids[2] });
        await Task.Delay(50);

        var stats = await Client.GetQueueStatsAsync(new GetQueueStatsRequest { Type = type });

        var counts = stats.Counts.ToDictionary(c => c.Status, c => c.Count);
        Assert.All(stats.Counts, c => Assert.Equal(type, c.Type));
        Assert.Equal(new Dictionary<TaskStatus, long>
        {
            [TaskStatus.Pending] = 1, [TaskStatus.Assigned] = 1, [TaskStatus.Completed] = 1, [TaskStatus.Cancelled] = 1,
        }, counts);
        Assert.Equal(1L, stats.Totals["TASK_STATUS_PENDING"]);
        Assert.Equal(1L, stats.Totals["TASK_STATUS_ASSIGNED"]);
        Assert.False(stats.Totals.ContainsKey("TASK_STATUS_FAILED"));
        foreach (var (status, count) in counts)
        {
            Assert.Equal(count, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = @status",
                ("type", type), ("status", Domain.TaskState.FromProto(status))));
        }
        var age = stats.OldestReadyAge.ToTimeSpan();
        Assert.True(age > TimeSpan.Zero, $"oldest_ready_age {age}");
        Assert.True(age < TimeSpan.FromMinutes(1), $"oldest_ready_age {age}");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Queue_stats_age_is_zero_when_nothing_is_ready()
    {
        var type = NewType("obs.later");
        var spec = Spec(type);
        spec.NotBefore = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(DateTime.UtcNow.AddHours(1));
        await Client.EnqueueAsync(spec);

        var stats = await Client.GetQueueStatsAsync(new GetQueueStatsRequest { Type = type });

        Assert.Equal(1L, Assert.Single(stats.Counts).Count);
        Assert.Equal(TimeSpan.Zero, stats.OldestReadyAge.ToTimeSpan());
    }

    // ---- (f) history pagination ----

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Task_history_pages_through_every_event_in_order()
    {
        var type = NewType("obs.history");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        await Client.ReportProgressAsync(new ReportProgressRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Percent = 50, Message = "half" });
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });

        var pages = new List<IReadOnlyList<TaskEvent>>();
        var token = "";
        do
        {
            var page = await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id, PageSize = 2, PageToken = token });
            pages.Add(page.Events);
            token = page.NextPageToken;
            Assert.True(pages.Count <= 5, "pagination does not end");
        }
        while (token != "");

        Assert.Equal([2, 2, 1], pages.Select(p => p.Count));
        var all = pages.SelectMany(p => p).ToList();
        Assert.Equal(["enqueued", "leased", "started", "progress", "completed"], all.Select(e => e.EventType));
        Assert.Equal("half", all[3].Message);
        Assert.Equal(5, all.Select(e => e.EventId).Distinct().Count());
        var unpaged = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events;
        Assert.Equal(unpaged.Select(e => e.EventId), all.Select(e => e.EventId));
        Assert.Equal(5L, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(task.Id))));
    }

    // ---- helpers ----

    private HttpClient RestClient() => env.Queue.Rest();

    private static StringContent JsonBody(object value) => new(JsonSerializer.Serialize(value), Encoding.UTF8, "application/json");

    /// <summary>
    /// A stream without after_event_id starts "from now on" once the server has handled the call; enqueue
    /// probe tasks until one shows up, so the events that follow cannot have been missed.
    /// </summary>
    private async Task WaitUntilLiveAsync(Watch watch, string probeType)
    {
        for (var attempt = 0; attempt < 40; attempt++)
        {
            await Client.EnqueueAsync(Spec(probeType));
            while (await watch.TryNextAsync(TimeSpan.FromMilliseconds(500)) is { } e)
            {
                if (e.TaskType == probeType)
                {
                    return;
                }
            }
        }
        Assert.Fail("the watch stream never delivered a probe event");
    }

    /// <summary>A WatchTasks call whose events are pumped into a channel, read with timeouts.</summary>
    private sealed class Watch : IAsyncDisposable
    {
        private readonly CancellationTokenSource _cts = new();
        private readonly Channel<TaskEvent> _events = Channel.CreateUnbounded<TaskEvent>();
        private readonly AsyncServerStreamingCall<WatchTasksResponse> _call;
        private readonly Task _pump;

        private Watch(QueueService.QueueServiceClient client, WatchTasksRequest request)
        {
            _call = client.WatchTasks(request, cancellationToken: _cts.Token);
            _pump = PumpAsync();
        }

        public static Watch Start(QueueService.QueueServiceClient client, WatchTasksRequest request) => new(client, request);

        private async Task PumpAsync()
        {
            try
            {
                await foreach (var response in _call.ResponseStream.ReadAllAsync(_cts.Token))
                {
                    await _events.Writer.WriteAsync(response.Event);
                }
                _events.Writer.TryComplete();
            }
            catch (Exception ex)
            {
                _events.Writer.TryComplete(_cts.IsCancellationRequested ? null : ex);
            }
        }

        /// <summary>The next event, or null when none arrives within <paramref name="timeout"/>.</summary>
        public async Task<TaskEvent?> TryNextAsync(TimeSpan timeout)
        {
            using var wait = new CancellationTokenSource(timeout);
            try
            {
                return await _events.Reader.ReadAsync(wait.Token);
            }
            catch (OperationCanceledException) when (wait.IsCancellationRequested)
            {
                return null;
            }
        }

        /// <summary>The next <paramref name="count"/> events that match, skipping others; fails after the stream timeout.</summary>
        public async Task<IReadOnlyList<TaskEvent>> ReadAsync(int count, Func<TaskEvent, bool> match)
        {
            var events = new List<TaskEvent>();
            var deadline = DateTime.UtcNow + StreamTimeout;
            while (events.Count < count)
            {
                var remaining = deadline - DateTime.UtcNow;
                var e = remaining > TimeSpan.Zero ? await TryNextAsync(remaining) : null;
                Assert.True(e is not null, $"only {events.Count} of {count} events arrived within {StreamTimeout}: {string.Join(", ", events.Select(x => x.EventType))}");
                if (match(e!))
                {
                    events.Add(e!);
                }
            }
            return events;
        }

        public async ValueTask DisposeAsync()
        {
            await _cts.CancelAsync();
            await _pump;
            _call.Dispose();
            _cts.Dispose();
        }
    }
}
