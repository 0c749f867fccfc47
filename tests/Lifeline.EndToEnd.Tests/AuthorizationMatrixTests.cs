using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Lifeline.Checkpoint.V1;
using Lifeline.EndToEnd.Tests.Fuzzing;
using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Gateway.Contracts;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Security;
using Xunit.Abstractions;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// Who may call what, generated from the compiled contracts rather than written down twice: every RPC × every
/// caller (no credential, reader, worker, operator, platform admin — all of tenant <c>default</c>) × an object of
/// the caller's own tenant and one of tenant <c>acme</c>, through the gateway over gRPC and, where the RPC has a
/// route, over REST. Refusals must be the expected status with details; an allowed call must not fail with UNKNOWN
/// or INTERNAL, must never show acme's data, and a lookup of acme's object must be NOT_FOUND. Afterwards acme's
/// objects are exactly as they were. Every service is also called directly, past the gateway: without an identity
/// and with a forged one, each call is UNAUTHENTICATED.
/// </summary>
[Collection(SuiteCollection.Name)]
public sealed class AuthorizationMatrixTests(SuiteFixture suite, ITestOutputHelper output)
{
    private static readonly (string Label, string? Key, Role? Role)[] Callers =
    [
        ("anonymous", null, null),
        ("reader", Keys.DefaultReader, Role.Reader),
        ("worker", Keys.DefaultWorker, Role.Worker),
        ("operator", Keys.DefaultOperator, Role.Operator),
        ("platform-admin", Keys.PlatformAdmin, Role.PlatformAdmin),
    ];

    /// <summary>The services behind the gateway; each has a free port the AppHost gave it (<see cref="SuiteFixture.ServiceAddress"/>).</summary>
    private static readonly string[] Services = ["queue", "registry", "checkpoint", "recovery", "backup"];

    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan StreamWindow = TimeSpan.FromSeconds(2);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Every_rpc_for_every_role_on_its_own_and_another_tenants_objects_through_the_gateway()
    {
        var run = Guid.NewGuid().ToString("N")[..10];
        await using var acme = await TenantObjects.SeedAsync(suite, "acme", Keys.AcmeWorker, Keys.AcmeOperator, run);
        await using var own = await TenantObjects.SeedAsync(suite, "default", Keys.DefaultWorker, Keys.DefaultOperator, run);
        var acmeBefore = await acme.SnapshotAsync();

        var catalog = ContractCatalog.Load();
        var unruled = catalog.Methods.Keys.Where(m => !RpcPermissions.Table.ContainsKey(m)).ToList();
        Assert.True(unruled.Count == 0, "RPCs without a rule in RpcPermissions: " + string.Join(", ", unruled));

        var cases = (from rpc in catalog.Methods.Values.OrderBy(m => m.FullName, StringComparer.Ordinal)
                     from caller in Callers
                     from target in new[] { own, acme }
                     select (rpc, caller, target)).ToList();
        var failures = new ConcurrentQueue<string>();
        var tally = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        using var channel = GrpcChannel.ForAddress(suite.GatewayGrpc, new GrpcChannelOptions { MaxReceiveMessageSize = null });
        using var http = new HttpClient { Timeout = CallDeadline };

        await Parallel.ForEachAsync(cases, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (c, ct) =>
        {
            var (rpc, caller, target) = c;
            var required = RpcPermissions.Required(rpc.FullName);
            StatusCode? refusal = caller.Role is not { } role ? StatusCode.Unauthenticated : role < required ? StatusCode.PermissionDenied : null;
            var token = caller.Key is null ? null : suite.Credentials.Key(caller.Key).Key;
            var crossTenant = !ReferenceEquals(target, own);
            var label = $"{rpc.FullName} as {caller.Label} on {target.Tenant}'s objects";

            // A bidirectional stream gets a whole session: opened as the caller's own worker, then every kind of message
            // aimed at the target's objects (Dispatch: another tenant's task ids must be NOT_FOUND acks).
            var grpc = await CallGrpcAsync(channel, rpc, ProtobufComposer.Session(rpc.Descriptor, own.Opening(run), target.Baseline(run)), token, ct);
            tally.AddOrUpdate($"grpc {grpc.Code}", 1, (_, n) => n + 1);
            Judge(failures, label + " over gRPC", grpc.Code, grpc.HasDetails, grpc.Body, refusal, crossTenant && IsLookup(rpc), acme.Marker);

            foreach (var route in rpc.HttpRoutes)
            {
                var rest = await CallRestAsync(http, RestCases.BaselineRequest(rpc, route, target.Baseline(run)), token, ct);
                tally.AddOrUpdate($"rest {(int)rest.Status}", 1, (_, n) => n + 1);
                JudgeRest(failures, $"{label} over REST {route.HttpMethod} {route.Template}", rest.Status, rest.Body, refusal,
                    crossTenant && IsLookup(rpc), acme.Marker);
            }
        });

        output.WriteLine($"{cases.Count} gRPC cases; outcomes: " + string.Join(", ", tally.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} ×{kv.Value}")));
        Assert.True(failures.IsEmpty, $"{failures.Count} wrong answers:\n" + string.Join("\n", failures.Order(StringComparer.Ordinal).Take(60)));

        // Nothing any default-tenant caller did reached acme's objects.
        var acmeAfter = await acme.SnapshotAsync();
        Assert.Equal(acmeBefore, acmeAfter);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Every_service_refuses_every_rpc_without_an_identity_or_with_a_forged_one()
    {
        var catalog = ContractCatalog.Load();
        // Signed, well-formed, naming a platform admin — but with a key that is not the suite's.
        var forged = TestIdentity.Tokens.Mint("mallory", "default", Role.PlatformAdmin, "lifeline-gateway");
        // No signature at all: {"alg":"none"}.
        var unsigned = UnsignedToken("mallory", "default", "platform-admin");
        var failures = new ConcurrentQueue<string>();
        var channels = Services.ToDictionary(name => name, name => GrpcChannel.ForAddress(suite.ServiceAddress(name)));
        try
        {
            var cases = (from rpc in catalog.Methods.Values
                         from identity in new (string Label, string? Token)[] { ("none", null), ("forged", forged), ("unsigned", unsigned) }
                         select (rpc, identity)).ToList();
            await Parallel.ForEachAsync(cases, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (c, ct) =>
            {
                var (rpc, identity) = c;
                var upstream = catalog.Services.Single(s => s.FullName == rpc.Descriptor.Service.FullName).Upstream;
                var result = await CallGrpcAsync(channels[upstream], rpc, [ProtobufComposer.BaselineMessage(rpc.Descriptor.InputType,
                    new Baseline("direct", new Random(1), DateTimeOffset.UtcNow))], null, ct, identity.Token);
                if (result.Code != StatusCode.Unauthenticated || !result.HasDetails)
                {
                    failures.Enqueue($"{rpc.FullName} at the {upstream} service with {identity.Label} identity: {result.Code} {result.Detail}");
                }
            });
        }
        finally
        {
            foreach (var channel in channels.Values)
            {
                channel.Dispose();
            }
        }

        Assert.True(failures.IsEmpty, $"{failures.Count} calls were not refused:\n" + string.Join("\n", failures.Order(StringComparer.Ordinal).Take(60)));
    }

    /// <summary>RPCs that read one object by its id: another tenant's id must be NOT_FOUND, not a validation error or an answer.</summary>
    private static bool IsLookup(RpcMethod rpc) =>
        rpc.Descriptor.Name.StartsWith("Get", StringComparison.Ordinal)
        && rpc.Descriptor.InputType.Fields.InFieldNumberOrder().Any(f => f.Name is "task_id" or "worker_id" or "plan_id" or "checkpoint_id")
        && RpcPermissions.Required(rpc.FullName) < Role.PlatformAdmin;

    private static void Judge(ConcurrentQueue<string> failures, string label, StatusCode code, bool hasDetails, byte[] body,
        StatusCode? refusal, bool mustBeNotFound, string foreignMarker)
    {
        if (refusal is { } expected)
        {
            if (code != expected || !hasDetails)
            {
                failures.Enqueue($"{label}: expected {expected} with details, got {code}");
            }

            return;
        }

        if (code is StatusCode.Unauthenticated or StatusCode.PermissionDenied or StatusCode.Unknown or StatusCode.Internal)
        {
            failures.Enqueue($"{label}: allowed, but answered {code}");
        }
        else if (mustBeNotFound && code != StatusCode.NotFound)
        {
            failures.Enqueue($"{label}: another tenant's object must be NOT_FOUND, got {code}");
        }

        if (Contains(body, foreignMarker))
        {
            failures.Enqueue($"{label}: the answer shows acme's data");
        }
    }

    private static void JudgeRest(ConcurrentQueue<string> failures, string label, HttpStatusCode status, byte[] body,
        StatusCode? refusal, bool mustBeNotFound, string foreignMarker)
    {
        var code = (int)status;
        if (refusal is { } expected)
        {
            var wanted = expected == StatusCode.Unauthenticated ? 401 : 403;
            if (code != wanted || !Contains(body, "\"details\""))
            {
                failures.Enqueue($"{label}: expected HTTP {wanted} with details, got {code}");
            }

            return;
        }

        if (code is 401 or 403 or >= 500)
        {
            failures.Enqueue($"{label}: allowed, but answered HTTP {code}");
        }
        else if (mustBeNotFound && code != 404)
        {
            failures.Enqueue($"{label}: another tenant's object must be HTTP 404, got {code}");
        }

        if (Contains(body, foreignMarker))
        {
            failures.Enqueue($"{label}: the answer shows acme's data");
        }
    }

    private static bool Contains(byte[] body, string text) => body.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text)) >= 0;

    private sealed record GrpcResult(StatusCode Code, string Detail, bool HasDetails, byte[] Body);

    private static async Task<GrpcResult> CallGrpcAsync(GrpcChannel channel, RpcMethod rpc, IReadOnlyList<byte[]> messages, string? bearer, CancellationToken ct,
        string? identityToken = null)
    {
        var method = RawRpc.Method(rpc.Descriptor);
        var type = method.Type;
        var headers = new Metadata();
        if (bearer is not null)
        {
            headers.Add("authorization", $"Bearer {bearer}");
        }

        if (identityToken is not null)
        {
            headers.Add(IdentityTokens.HeaderName, identityToken);
        }

        var options = new CallOptions(headers, DateTime.UtcNow + (rpc.IsStreaming ? StreamWindow : CallDeadline), ct);
        var invoker = channel.CreateCallInvoker();
        var received = new MemoryStream();
        try
        {
            switch (type)
            {
                case MethodType.Unary:
                    received.Write(await invoker.AsyncUnaryCall(method, null, options, messages[0]).ResponseAsync);
                    break;
                case MethodType.ServerStreaming:
                {
                    using var call = invoker.AsyncServerStreamingCall(method, null, options, messages[0]);
                    while (await call.ResponseStream.MoveNext(CancellationToken.None))
                    {
                        received.Write(call.ResponseStream.Current);
                    }

                    break;
                }

                default:
                {
                    using var call = invoker.AsyncDuplexStreamingCall(method, null, options);
                    try
                    {
                        foreach (var message in messages)
                        {
                            await call.RequestStream.WriteAsync(message);
                        }
                        await call.RequestStream.CompleteAsync();
                    }
                    catch (Exception ex) when (ex is RpcException or InvalidOperationException)
                    {
                        // Answered before reading: the status is in the response.
                    }

                    while (await call.ResponseStream.MoveNext(CancellationToken.None))
                    {
                        received.Write(call.ResponseStream.Current);
                    }

                    break;
                }
            }

            return new GrpcResult(StatusCode.OK, "", true, received.ToArray());
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded && rpc.IsStreaming)
        {
            return new GrpcResult(StatusCode.OK, "still open", true, received.ToArray()); // a stream that was let in
        }
        catch (RpcException ex)
        {
            var details = ex.Trailers.Any(t => t.Key == "grpc-status-details-bin");
            return new GrpcResult(ex.StatusCode, ex.Status.Detail, details, received.ToArray());
        }
    }

    private async Task<(HttpStatusCode Status, byte[] Body)> CallRestAsync(HttpClient http, RestRequest request, string? bearer, CancellationToken ct)
    {
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), new Uri(suite.GatewayRest.GetLeftPart(UriPartial.Authority) + request.PathAndQuery))
        {
            Version = HttpVersion.Version11,
        };
        if (bearer is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        if (request.Body is not null)
        {
            message.Content = new ByteArrayContent(request.Body);
            message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(CallDeadline);
        using var response = await http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
        var body = new MemoryStream();
        try
        {
            using var streamWindow = CancellationTokenSource.CreateLinkedTokenSource(ct);
            streamWindow.CancelAfter(StreamWindow);
            await (await response.Content.ReadAsStreamAsync(streamWindow.Token)).CopyToAsync(body, streamWindow.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // A streaming route stays open: what came so far is the answer.
        }

        return (response.StatusCode, body.ToArray());
    }

    private static string UnsignedToken(string subject, string tenant, string role)
    {
        static string Part(string json) => Convert.ToBase64String(Encoding.UTF8.GetBytes(json)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var expires = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        return Part("""{"alg":"none","typ":"lifeline-identity+jwt"}""") + "." +
            Part($$"""{"sub":"{{subject}}","tenant":"{{tenant}}","role":"{{role}}","iss":"lifeline-gateway","aud":"lifeline-services","exp":{{expires}}}""") + ".";
    }

    /// <summary>
    /// One tenant's objects for the matrix to aim at — a task, a live worker (kept beating), a workflow with a
    /// checkpoint, a recovery plan — each carrying the tenant's <see cref="Marker"/>, which no answer to another
    /// tenant may contain.
    /// </summary>
    private sealed class TenantObjects : IAsyncDisposable
    {
        private readonly SuiteFixture _suite;
        private readonly string _ownKey;
        private readonly CancellationTokenSource _stop = new();
        private Task _beating = Task.CompletedTask;

        private TenantObjects(SuiteFixture suite, string tenant, string ownKey, string marker)
        {
            _suite = suite;
            Tenant = tenant;
            _ownKey = ownKey;
            Marker = marker;
        }

        public string Tenant { get; }

        public string Marker { get; }

        public string TaskId { get; private set; } = "";

        public string WorkerId { get; private set; } = "";

        public string WorkflowId { get; private set; } = "";

        public string CheckpointId { get; private set; } = "";

        public string PlanId { get; private set; } = "";

        public static async Task<TenantObjects> SeedAsync(SuiteFixture suite, string tenant, string workerKey, string operatorKey, string run)
        {
            var objects = new TenantObjects(suite, tenant, operatorKey, $"secret{tenant}{run}");
            var type = $"e2e.matrix.{run}";
            var queue = suite.Queue(workerKey);
            objects.TaskId = (await queue.EnqueueTaskAsync(new EnqueueTaskRequest
            {
                Task = new TaskSpec { Type = type, Payload = $$"""{"marker":"{{objects.Marker}}"}""" },
            })).Task.Id;

            var registry = suite.Registry(workerKey);
            var registered = await registry.RegisterWorkerAsync(new RegisterWorkerRequest
            {
                Name = $"matrix-{objects.Marker}", Type = WorkerType.Standalone, Capabilities = { type, StreamType(run) },
            });
            objects.WorkerId = registered.Worker.Id;
            objects._beating = objects.BeatAsync(registry, registered.Worker.Id, registered.Worker.SessionEpoch);

            // Ids travel in requests (and REST errors echo them): only the objects' contents carry the marker.
            objects.WorkflowId = $"matrix-{tenant}-{Guid.NewGuid():N}";
            objects.CheckpointId = (await suite.Checkpoints(workerKey).CreateCheckpointAsync(new CreateCheckpointRequest
            {
                WorkflowId = objects.WorkflowId, Name = objects.Marker, Type = CheckpointType.Auto, Phase = 1,
                State = new CheckpointState { Workflow = new WorkflowState { CurrentPhase = 1, Status = "running" }, Context = $$"""{"marker":"{{objects.Marker}}"}""" },
            })).Metadata.Id;

            objects.PlanId = (await new RecoveryPlanService.RecoveryPlanServiceClient(suite.Grpc(operatorKey)).CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest
            {
                Error = new ErrorContext { Code = "MATRIX", Category = ErrorCategory.Transient, Message = objects.Marker, TaskId = objects.TaskId },
            })).Plan.Id;
            return objects;
        }

        /// <summary>Requests aimed at these objects: every id field of a request names one of them.</summary>
        public Baseline Baseline(string run) => new($"mx{run}", new Random(7), DateTimeOffset.UtcNow)
        {
            Fixed = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["task_id"] = TaskId, ["task_ids"] = TaskId, ["depends_on_task_id"] = TaskId,
                ["worker_id"] = WorkerId, ["assigned_worker_id"] = WorkerId,
                ["workflow_id"] = WorkflowId,
                ["checkpoint_id"] = CheckpointId, ["from_checkpoint_id"] = CheckpointId, ["to_checkpoint_id"] = CheckpointId,
                ["target_checkpoint_id"] = CheckpointId, ["resume_checkpoint_id"] = CheckpointId, ["parent_id"] = CheckpointId,
                ["plan_id"] = PlanId,
            },
        };

        /// <summary>A type only the tenant's worker runs and no task has: its dispatch streams open and lease nothing.</summary>
        private static string StreamType(string run) => $"e2e.matrix.stream.{run}";

        /// <summary>How the tenant's own worker opens a stream (Dispatch's <c>open</c>).</summary>
        public Baseline Opening(string run) => new($"mx{run}", new Random(7), DateTimeOffset.UtcNow)
        {
            Fixed = new Dictionary<string, string>(StringComparer.Ordinal) { ["worker_id"] = WorkerId, ["task_types"] = StreamType(run) },
        };

        /// <summary>The objects as the tenant's own operator reads them.</summary>
        public async Task<string> SnapshotAsync()
        {
            var task = (await _suite.Queue(_ownKey).GetTaskAsync(new GetTaskRequest { TaskId = TaskId })).Task;
            var worker = (await _suite.Registry(_ownKey).GetWorkerAsync(new GetWorkerRequest { WorkerId = WorkerId })).Worker;
            var checkpoints = await _suite.Checkpoints(_ownKey).ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = WorkflowId });
            var plan = (await new RecoveryPlanService.RecoveryPlanServiceClient(_suite.Grpc(_ownKey))
                .GetRecoveryPlanAsync(new GetRecoveryPlanRequest { PlanId = PlanId })).Plan;
            return string.Join("\n",
                JsonFormatter.Default.Format(task),
                $"worker {worker.Id} {worker.Name} {worker.Status} drain={worker.Status == Registry.V1.WorkerStatus.Draining}",
                string.Join(",", checkpoints.Checkpoints.Select(c => $"{c.Id}:{c.IsValid}")),
                JsonFormatter.Default.Format(plan));
        }

        private async Task BeatAsync(RegistryService.RegistryServiceClient registry, string workerId, long epoch)
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    await registry.HeartbeatAsync(new HeartbeatRequest { WorkerId = workerId, SessionEpoch = epoch }, cancellationToken: _stop.Token);
                    await Task.Delay(TimeSpan.FromSeconds(1), _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled)
                {
                    return;
                }
                catch (RpcException)
                {
                    // Deregistered or drained by a caller of its own tenant (the own-tenant pass may); for the
                    // other tenant's worker the snapshot shows it.
                    return;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _beating;
            _stop.Dispose();
        }
    }
}
