using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using static Lifeline.Gateway.Tests.TestSupport;

namespace Lifeline.Gateway.Tests;

/// <summary>Routing, streams, reflection, health, tracing, rate limits and the OpenAPI document of the gateway.</summary>
public sealed class FrontDoorTests(GatewayEnvironment env) : IClassFixture<GatewayEnvironment>
{
    private GatewayHost Gateway => env.Gateway;

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task One_tenants_request_with_thousands_of_bad_items_gets_a_small_answer_and_another_tenants_long_polls_live_on()
    {
        // acme's worker long-polls twice through the gateway (the same HTTP/2 connections as the bad caller).
        var type = NewType("gw.poll");
        var acme = await Gateway.Registry("acme-worker").RegisterWorkerAsync(Registration(type));
        var polls = Enumerable.Range(0, 2).Select(_ =>
        {
            var lease = Lease(acme.Worker.Id, type);
            // Within this environment's 2 s unary activity timeout of the gateway.
            lease.Wait = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(1.5));
            return Gateway.Queue("acme-worker").LeaseTasksAsync(lease).ResponseAsync;
        }).ToList();
        await Task.Delay(200);

        // The default tenant's worker sends 2,000 invalid tasks, and 1,000 ids to redrive as an operator.
        var batch = new EnqueueTasksRequest();
        batch.Tasks.AddRange(Enumerable.Range(0, 2000).Select(i => new BatchTask { Key = $"k{i}", Task = new TaskSpec { Type = $"not a type {i} " + new string('x', 200) } }));
        var ex = await RefusedAsync(() => Gateway.Queue("default-worker").EnqueueTasksAsync(batch).ResponseAsync, StatusCode.InvalidArgument);
        Assert.True(ex.Status.Detail.Length <= 1001, $"grpc-message of {ex.Status.Detail.Length} characters");
        Assert.True(ex.GetRpcStatus()!.CalculateSize() < 8 * 1024);
        var redrive = new RedriveDeadLettersRequest();
        redrive.TaskIds.AddRange(Enumerable.Range(0, 1000).Select(i => $"not-a-uuid-{i}-" + new string('y', 100)));
        ex = await RefusedAsync(() => Gateway.Queue("default-operator").RedriveDeadLettersAsync(redrive).ResponseAsync, StatusCode.InvalidArgument);
        Assert.True(ex.GetRpcStatus()!.CalculateSize() < 8 * 1024);

        // Both polls end normally at their wait (empty), and the connections still carry acme's work.
        Assert.All(await Task.WhenAll(polls), a => Assert.Empty(a.Tasks));
        await Gateway.Queue("acme-operator").EnqueueTaskAsync(Enqueue(type));
        var leased = await Gateway.Queue("acme-worker").LeaseTasksAsync(Lease(acme.Worker.Id, type));
        Assert.Single(leased.Tasks);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Reflection_through_the_gateway_lists_every_service_and_needs_no_credential()
    {
        var client = new ServerReflection.ServerReflectionClient(Gateway.Channel);
        using var call = client.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        Assert.True(await call.ResponseStream.MoveNext());
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("lifeline.queue.v1.QueueService", services);
        Assert.Contains("lifeline.registry.v1.RegistryService", services);
        Assert.Contains("grpc.health.v1.Health", services);

        // grpcurl describe: the file defining a service, with its dependencies resolvable.
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "lifeline.queue.v1.QueueService" });
        Assert.True(await call.ResponseStream.MoveNext());
        Assert.NotEmpty(call.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto);
        await call.RequestStream.CompleteAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_over_http1_enqueues_a_task_that_grpc_then_reads()
    {
        var type = NewType("rest");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks")
        {
            Headers = { { "authorization", "Bearer " + GatewayEnvironment.Key("default-worker") } },
            Content = JsonContent.Create(new { task = new { type, payload = "{\"n\":1}", priority = 7 } }),
        };
        using var response = await Gateway.RestClient.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        Assert.Equal(HttpVersion.Version11, response.Version);
        var id = JsonDocument.Parse(text).RootElement.GetProperty("task").GetProperty("id").GetString()!;

        var task = (await Gateway.Queue("default-reader").GetTaskAsync(new GetTaskRequest { TaskId = id })).Task;
        Assert.Equal(type, task.Type);
        Assert.Equal(7, task.Priority);

        // And back over REST, path parameter and all.
        using var get = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/tasks/{id}") { Headers = { { "x-api-key", GatewayEnvironment.Key("default-reader") } } };
        using var got = await Gateway.RestClient.SendAsync(get);
        Assert.Equal(HttpStatusCode.OK, got.StatusCode);
        Assert.Equal(type, JsonDocument.Parse(await got.Content.ReadAsStringAsync()).RootElement.GetProperty("task").GetProperty("type").GetString());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_over_http2_works_on_the_grpc_port()
    {
        using var client = new HttpClient { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(Gateway.Grpc, "/api/v1/queue/stats"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Headers = { { "x-api-key", GatewayEnvironment.Key("default-reader") } },
        };
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Unknown_routes_are_404_and_unknown_methods_unimplemented()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/nothing-here") { Headers = { { "x-api-key", GatewayEnvironment.Key("default-operator") } } };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);

        var method = new Method<GetTaskRequest, GetTaskResponse>(MethodType.Unary, "lifeline.queue.v1.QueueService", "NoSuchMethod",
            Marshallers.Create(r => Google.Protobuf.MessageExtensions.ToByteArray(r), GetTaskRequest.Parser.ParseFrom),
            Marshallers.Create(r => Google.Protobuf.MessageExtensions.ToByteArray(r), GetTaskResponse.Parser.ParseFrom));
        await RefusedAsync(
            () => Gateway.Invoker("default-operator").AsyncUnaryCall(method, null, new CallOptions(), new GetTaskRequest()).ResponseAsync,
            StatusCode.Unimplemented);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_watch_stream_outlives_the_unary_activity_timeout_and_delivers_events()
    {
        var type = NewType("watch");
        using var watch = Gateway.Queue("default-reader").WatchTasks(new WatchTasksRequest { TaskTypes = { type } });
        var next = watch.ResponseStream.MoveNext();

        // Quiet for longer than the gateway's unary activity timeout (2 s in this environment).
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.False(next.IsCompleted, next.IsFaulted ? next.Exception!.ToString() : "the stream ended");

        var task = (await Gateway.Queue("default-worker").EnqueueTaskAsync(Enqueue(type))).Task;
        Assert.True(await next.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(task.Id, watch.ResponseStream.Current.Event.TaskId);
        Assert.Equal("enqueued", watch.ResponseStream.Current.Event.EventType);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_heartbeat_stream_stays_open_through_the_gateway()
    {
        var worker = await Gateway.Registry("default-worker").RegisterWorkerAsync(Registration("hb.type"));
        using var stream = Gateway.Registry("default-worker").HeartbeatStream();
        // A few small beats over longer than Kestrel's data-rate grace period (5 s) and the unary activity timeout (2 s).
        for (var i = 0; i < 5; i++)
        {
            await stream.RequestStream.WriteAsync(new HeartbeatStreamRequest
            {
                Beat = new HeartbeatRequest { WorkerId = worker.Worker.Id, SessionEpoch = worker.Worker.SessionEpoch, Status = WorkerStatus.Online },
            });
            Assert.True(await stream.ResponseStream.MoveNext().WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.NotNull(stream.ResponseStream.Current.Ack);
            await Task.Delay(TimeSpan.FromSeconds(2.5));
        }

        await stream.RequestStream.CompleteAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dispatch_stream_outlives_the_unary_activity_timeout_and_pushes_and_acks_through_the_gateway()
    {
        var type = NewType("dispatch");
        var worker = (await Gateway.Registry("default-worker").RegisterWorkerAsync(Registration(type))).Worker;
        using var beating = new CancellationTokenSource();
        var heartbeats = Task.Run(async () =>
        {
            while (!beating.IsCancellationRequested)
            {
                await Gateway.Registry("default-worker").HeartbeatAsync(new HeartbeatRequest
                {
                    WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Online,
                });
                await Task.Delay(TimeSpan.FromMilliseconds(500), beating.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        });

        using var stream = Gateway.Queue("default-worker").Dispatch();
        await stream.RequestStream.WriteAsync(new DispatchRequest
        {
            Open = new DispatchOpen { WorkerId = worker.Id, TaskTypes = { type }, Slots = 2 },
        });
        var next = stream.ResponseStream.MoveNext();

        // Quiet for longer than the gateway's unary activity timeout (2 s in this environment).
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.False(next.IsCompleted, next.IsFaulted ? next.Exception!.ToString() : "the stream ended");

        var task = (await Gateway.Queue("default-worker").EnqueueTaskAsync(Enqueue(type))).Task;
        Assert.True(await next.WaitAsync(TimeSpan.FromSeconds(10)));
        var pushed = stream.ResponseStream.Current.Task;
        Assert.Equal(task.Id, pushed.Id);
        Assert.Equal(Queue.V1.TaskStatus.Running, pushed.Status);
        Assert.Equal(worker.Id, pushed.AssignedWorkerId);

        await stream.RequestStream.WriteAsync(new DispatchRequest
        {
            RequestId = 7, Complete = new CompleteTaskRequest { TaskId = pushed.Id, FencingToken = pushed.FencingToken, Result = "42" },
        });
        Assert.True(await stream.ResponseStream.MoveNext().WaitAsync(TimeSpan.FromSeconds(10)));
        var ack = stream.ResponseStream.Current.Ack;
        Assert.Equal(7, ack.RequestId);
        Assert.True(ack.Accepted);
        Assert.Equal(Queue.V1.TaskStatus.Completed, ack.Task.Status);

        await stream.RequestStream.CompleteAsync();
        Assert.False(await stream.ResponseStream.MoveNext().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(StatusCode.OK, stream.GetStatus().StatusCode);
        await beating.CancelAsync();
        await heartbeats;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dispatch_stream_is_refused_to_a_reader_and_to_an_unregistered_worker()
    {
        var type = NewType("dispatch.refused");
        var open = new DispatchRequest { Open = new DispatchOpen { WorkerId = Guid.NewGuid().ToString(), TaskTypes = { type }, Slots = 1 } };

        using (var reader = Gateway.Queue("default-reader").Dispatch())
        {
            var error = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                await reader.RequestStream.WriteAsync(open);
                await reader.ResponseStream.MoveNext();
            });
            Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        }

        // Admitted like a lease: the registry's mirror must know the worker.
        using var unregistered = Gateway.Queue("default-worker").Dispatch();
        await unregistered.RequestStream.WriteAsync(open);
        var refused = await Assert.ThrowsAsync<RpcException>(() => unregistered.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Equal("WORKER_NOT_REGISTERED", refused.GetRpcStatus()!.GetDetail<Google.Rpc.ErrorInfo>()!.Reason);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_trace_id_is_returned_and_propagated_as_traceparent()
    {
        const string traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queue/stats")
        {
            Headers = { { "x-api-key", GatewayEnvironment.Key("default-reader") }, { "X-Trace-Id", traceId } },
        };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(traceId, response.Headers.GetValues("X-Trace-Id").Single());
        Assert.Contains(env.QueueRequests, h =>
            h.GetValueOrDefault("x-trace-id") == traceId && (h.GetValueOrDefault("traceparent") ?? "").StartsWith($"00-{traceId}-", StringComparison.Ordinal));

        // Without one, the gateway makes one up and returns it, also to gRPC callers.
        var call = Gateway.Queue("default-reader").GetQueueStatsAsync(new GetQueueStatsRequest());
        await call;
        var generated = (await call.ResponseHeadersAsync).GetValue("x-trace-id");
        Assert.Matches("^[0-9a-f]{32}$", generated);
        Assert.Contains(env.QueueRequests, h => (h.GetValueOrDefault("traceparent") ?? "").StartsWith($"00-{generated}-", StringComparison.Ordinal));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Health_aggregates_every_service_over_http_and_grpc()
    {
        using var response = await Gateway.RestClient.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var health = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("Healthy", health.GetProperty("status").GetString());
        Assert.Equal("Healthy", health.GetProperty("services").GetProperty("queue").GetString());
        Assert.Equal("Healthy", health.GetProperty("services").GetProperty("registry").GetString());

        var client = new Grpc.Health.V1.Health.HealthClient(Gateway.Channel);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await client.CheckAsync(new HealthCheckRequest())).Status);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving,
            (await client.CheckAsync(new HealthCheckRequest { Service = "lifeline.queue.v1.QueueService" })).Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Health_turns_503_when_a_service_stops()
    {
        // A gateway of its own in front of a registry instance of its own, which is then stopped.
        var registry = await env.StartRegistryAsync();
        var gateway = await env.StartGatewayAsync(registry: registry);
        using (var healthy = await gateway.RestClient.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
        }

        await registry.StopAsync();
        using var response = await gateway.RestClient.GetAsync("/health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var health = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("Unhealthy", health.GetProperty("status").GetString());
        Assert.Equal("Unhealthy", health.GetProperty("services").GetProperty("registry").GetString());
        Assert.Equal("Healthy", health.GetProperty("services").GetProperty("queue").GetString());

        var client = new Grpc.Health.V1.Health.HealthClient(gateway.Channel);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, (await client.CheckAsync(new HealthCheckRequest())).Status);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing,
            (await client.CheckAsync(new HealthCheckRequest { Service = "lifeline.registry.v1.RegistryService" })).Status);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await client.CheckAsync(new HealthCheckRequest { Service = "queue" })).Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_client_over_its_rate_limit_is_refused_with_resource_exhausted_and_429()
    {
        var gateway = await env.StartGatewayAsync(new Dictionary<string, string?>
        {
            ["Gateway:RateLimit:PermitsPerSecond"] = "1",
            ["Gateway:RateLimit:Burst"] = "2",
        });
        var queue = gateway.Queue("limited-worker");
        await queue.GetQueueStatsAsync(new GetQueueStatsRequest());
        await queue.GetQueueStatsAsync(new GetQueueStatsRequest());
        var ex = await RefusedAsync(() => queue.GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync, StatusCode.ResourceExhausted);
        Assert.NotNull(ex.GetRpcStatus()!.GetDetail<Google.Rpc.RetryInfo>());

        // Another client has its own bucket.
        await gateway.Queue("default-reader").GetQueueStatsAsync(new GetQueueStatsRequest());

        HttpResponseMessage? refused = null;
        for (var i = 0; i < 3 && refused is null; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queue/stats") { Headers = { { "x-api-key", GatewayEnvironment.Key("limited-rest") } } };
            var response = await gateway.RestClient.SendAsync(request);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                refused = response;
            }
            else
            {
                response.Dispose();
            }
        }

        Assert.NotNull(refused);
        Assert.True(refused.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
        refused.Dispose();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_openapi_document_describes_the_rest_surface()
    {
        using var response = await Gateway.RestClient.GetAsync("/openapi.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.StartsWith("3.", document.GetProperty("openapi").GetString());
        var paths = document.GetProperty("paths");
        var enqueue = paths.GetProperty("/api/v1/tasks").GetProperty("post");
        Assert.Equal("worker", enqueue.GetProperty("x-lifeline-role").GetString());
        Assert.Equal("#/components/schemas/lifeline.queue.v1.EnqueueTaskRequest",
            enqueue.GetProperty("requestBody").GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString());
        var get = paths.GetProperty("/api/v1/tasks/{task_id}").GetProperty("get");
        Assert.Equal("path", get.GetProperty("parameters")[0].GetProperty("in").GetString());
        Assert.True(paths.TryGetProperty("/api/v1/tasks/{task_id}:cancel", out _));
        Assert.True(paths.TryGetProperty("/api/v1/workers", out _));
        var list = paths.GetProperty("/api/v1/tasks").GetProperty("get");
        Assert.Contains(list.GetProperty("parameters").EnumerateArray(), p => p.GetProperty("name").GetString() == "pageSize" && p.GetProperty("in").GetString() == "query");

        var schemas = document.GetProperty("components").GetProperty("schemas");
        Assert.Equal("string", schemas.GetProperty("lifeline.queue.v1.TaskStatus").GetProperty("type").GetString());
        Assert.True(schemas.GetProperty("lifeline.queue.v1.TaskSpec").GetProperty("properties").TryGetProperty("maxRetries", out _));
        Assert.True(document.GetProperty("components").GetProperty("securitySchemes").TryGetProperty("bearer", out _));
    }
}
