using Grpc.Core;
using Lifeline.Registry.Breakers;
using Lifeline.Registry.Events;
using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.Options;
using Lifeline.Registry.Stats;
using Lifeline.Registry.V1;
using Lifeline.Registry.Workers;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Paging;
using Lifeline.ServiceDefaults.Postgres;
using Lifeline.ServiceDefaults.Tenancy;
using Lifeline.ServiceDefaults.Validation;
using Microsoft.Extensions.Options;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Registry.Grpc;

/// <summary>The RegistryService contract: validates, delegates to the domain classes, maps the result.</summary>
public sealed class RegistryGrpcService(
    WorkerDirectory directory, HeartbeatRecorder heartbeats, RedisMirror mirror, WorkerCommandHub commands, OutcomeRecorder outcomes,
    BreakerStore breakers, WorkerEventFeed feed, IOptions<RegistryOptions> options, WorkerReconciliation reconciliation)
    : RegistryService.RegistryServiceBase
{
    private const string WorkersListing = "registry.workers";
    private const string BreakersListing = "registry.circuit_breakers";

    public override async Task<RegisterWorkerResponse> RegisterWorker(RegisterWorkerRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var registration = RegistryValidation.Registration(request);
        var (worker, created) = await directory.RegisterAsync(tenant, registration, context.CancellationToken);
        return new RegisterWorkerResponse
        {
            Worker = worker.ToProto(),
            Created = created,
            HeartbeatInterval = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(options.Value.HeartbeatInterval),
        };
    }

    public override async Task<DeregisterWorkerResponse> DeregisterWorker(DeregisterWorkerRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RegistryValidation.WorkerId(request.WorkerId);
        return new DeregisterWorkerResponse { Worker = (await directory.DeregisterAsync(tenant, id, context.CancellationToken)).ToProto() };
    }

    public override async Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var beat = RegistryValidation.Heartbeat(v, request);
        v.ThrowIfAny();
        return ToResponse(await heartbeats.BeatAsync(tenant, beat, context.CancellationToken));
    }

    public override async Task HeartbeatStream(IAsyncStreamReader<HeartbeatStreamRequest> requestStream,
        IServerStreamWriter<HeartbeatStreamResponse> responseStream, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var ct = context.CancellationToken;
        using var writeLock = new SemaphoreSlim(1, 1);
        async Task WriteAsync(HeartbeatStreamResponse message)
        {
            await writeLock.WaitAsync(ct);
            try
            {
                await responseStream.WriteAsync(message, ct);
            }
            finally
            {
                writeLock.Release();
            }
        }

        Guid? bound = null;
        IDisposable? subscription = null;
        try
        {
            await foreach (var message in requestStream.ReadAllAsync(ct))
            {
                var v = new Violations();
                var beat = RegistryValidation.Heartbeat(v, message.Beat ?? new HeartbeatRequest(), "beat.");
                v.AddIf(bound is { } b && b != beat.WorkerId, "beat.worker_id", "a heartbeat stream serves one worker");
                v.ThrowIfAny();
                var outcome = await heartbeats.BeatAsync(tenant, beat, ct);
                if (bound is null)
                {
                    bound = beat.WorkerId;
                    // From now on, commands issued for this worker are pushed as soon as they are announced.
                    subscription = commands.Subscribe(tenant, beat.WorkerId, async () =>
                    {
                        foreach (var command in await mirror.TakeCommandsAsync(tenant, beat.WorkerId))
                        {
                            await WriteAsync(new HeartbeatStreamResponse { Command = command });
                        }
                    });
                }
                await WriteAsync(new HeartbeatStreamResponse { Ack = ToResponse(outcome) });
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the worker hung up
        }
        finally
        {
            subscription?.Dispose();
        }
    }

    private HeartbeatResponse ToResponse(HeartbeatOutcome outcome)
    {
        var response = new HeartbeatResponse
        {
            Status = WorkerMapper.ParseStatus(outcome.Status),
            ExpiresAt = Time(outcome.ExpiresAt),
        };
        response.Commands.AddRange(outcome.Commands);
        return response;
    }

    public override async Task<GetWorkerResponse> GetWorker(GetWorkerRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RegistryValidation.WorkerId(request.WorkerId);
        var worker = await directory.GetAsync(tenant, id, context.CancellationToken);
        return new GetWorkerResponse { Worker = worker.ToProto(await mirror.LiveAsync(tenant, id)) };
    }

    public override async Task<ListWorkersResponse> ListWorkers(ListWorkersRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        v.DefinedEnum("status", request.Status);
        v.DefinedEnum("type", request.Type);
        var capability = RegistryValidation.Capability(v, request.Capability);
        var size = v.PageSize("page_size", request.PageSize, 50, 1000);
        string? after = null;
        PageTokens.TryRead(v, request.PageToken, token => PageTokens.TryDecode(WorkersListing, token, out after));
        v.ThrowIfAny();
        var status = request.Status == WorkerStatus.Unspecified ? null : WorkerMapper.StatusName(request.Status);
        var type = request.Type == WorkerType.Unspecified ? null : WorkerMapper.TypeName(request.Type);
        var (workers, next) = await directory.ListAsync(tenant, status, capability, type, size, after, context.CancellationToken);
        var response = new ListWorkersResponse
        {
            NextPageToken = next is null ? "" : PageTokens.Encode(WorkersListing, next),
        };
        response.Workers.AddRange(workers.Select(w => w.ToProto()));
        return response;
    }

    public override async Task<DrainWorkerResponse> DrainWorker(DrainWorkerRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var id = v.Uuid("worker_id", request.WorkerId);
        v.Text("reason", request.Reason, 1024);
        v.ThrowIfAny();
        var reason = string.IsNullOrEmpty(request.Reason) ? "drained by an operator" : request.Reason;
        return new DrainWorkerResponse { Worker = (await directory.DrainAsync(tenant, id, reason, context.CancellationToken)).ToProto() };
    }

    public override async Task WatchWorkers(WatchWorkersRequest request, IServerStreamWriter<WatchWorkersResponse> responseStream, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        RepeatedFields.ThrowIfCountOutside("event_types", request.EventTypes.Count, 100, items: "event types");
        var v = new Violations();
        RepeatedFields.CheckItems(v, "event_types", request.EventTypes.Count, (v, i) =>
            v.AddIf(request.EventTypes[i] == WorkerEventType.Unspecified || !Enum.IsDefined(request.EventTypes[i]),
                $"event_types[{i}]", "is not a worker event type"));
        Guid? worker = string.IsNullOrEmpty(request.WorkerId) ? null : v.Uuid("worker_id", request.WorkerId);
        var after = v.Position("after_event_id", request.AfterEventId);
        v.ThrowIfAny();
        var filter = new WorkerWatchFilter(
            request.EventTypes.Where(e => Enum.IsDefined(e) && e != WorkerEventType.Unspecified).Select(WorkerMapper.EventName).ToArray(), worker, after);
        try
        {
            await foreach (var e in feed.WatchAsync(tenant, filter, context.CancellationToken))
            {
                await responseStream.WriteAsync(new WatchWorkersResponse { Event = e.ToProto() }, context.CancellationToken);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
        }
    }

    public override async Task<RecordTaskOutcomeResponse> RecordTaskOutcome(RecordTaskOutcomeRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var workerId = v.Uuid("worker_id", request.WorkerId);
        if (request.Outcome is { } o && string.IsNullOrEmpty(o.WorkerId))
        {
            o.WorkerId = request.WorkerId;
        }
        var outcome = RegistryValidation.Outcome(v, "outcome", request.Outcome);
        v.AddIf(outcome is not null && workerId != Guid.Empty && outcome.WorkerId != Guid.Empty && outcome.WorkerId != workerId,
            "outcome.worker_id", "must equal worker_id");
        v.ThrowIfAny();
        _ = await directory.GetAsync(tenant, workerId, context.CancellationToken); // NOT_FOUND for unknown workers
        var (recorded, _) = await outcomes.RecordAsync(tenant, [outcome!], context.CancellationToken);
        var stats = await outcomes.GetAsync(tenant, workerId, context.CancellationToken);
        var breaker = await breakers.GetAsync(tenant, workerId, context.CancellationToken);
        return new RecordTaskOutcomeResponse { Stats = stats!.ToProto(), CircuitBreaker = breaker.ToProto(), Recorded = recorded > 0 };
    }

    public override async Task<RecordTaskOutcomesResponse> RecordTaskOutcomes(RecordTaskOutcomesRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        RepeatedFields.ThrowIfCountOutside("outcomes", request.Outcomes.Count, 1000, min: 1, items: "outcomes");
        var v = new Violations();
        var list = new List<Outcome>(request.Outcomes.Count);
        RepeatedFields.CheckItems(v, "outcomes", request.Outcomes.Count, (v, i) => list.Add(RegistryValidation.Outcome(v, $"outcomes[{i}]", request.Outcomes[i])));
        v.ThrowIfAny();
        var (recorded, unknown) = await outcomes.RecordAsync(tenant, list, context.CancellationToken);
        return new RecordTaskOutcomesResponse { RecordedCount = recorded, UnknownWorkerCount = unknown };
    }

    public override async Task<GetWorkerStatsResponse> GetWorkerStats(GetWorkerStatsRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RegistryValidation.WorkerId(request.WorkerId);
        var stats = await outcomes.GetAsync(tenant, id, context.CancellationToken) ?? throw new NotFoundException("worker", id.ToString());
        return new GetWorkerStatsResponse { Stats = stats.ToProto() };
    }

    public override async Task<ListWorkerStatsResponse> ListWorkerStats(ListWorkerStatsRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        v.DefinedEnum("order", request.Order);
        v.AddIf(request.MinOutcomes < 0, "min_outcomes", "must not be negative");
        v.AddIf(double.IsNaN(request.MaxSuccessRate) || request.MaxSuccessRate is < 0 or > 1, "max_success_rate", "must be between 0 and 1");
        var size = v.PageSize("page_size", request.PageSize, 50, 1000);
        v.ThrowIfAny();
        var underperforming = request.Order == StatsOrder.Underperforming;
        var list = await outcomes.ListAsync(tenant, underperforming, request.MinOutcomes == 0 ? 10 : request.MinOutcomes,
            request.MaxSuccessRate == 0 ? 0.8 : request.MaxSuccessRate, size, context.CancellationToken);
        var response = new ListWorkerStatsResponse();
        response.Stats.AddRange(list.Select(s => s.ToProto()));
        return response;
    }

    public override async Task<RecalculateWorkerStatsResponse> RecalculateWorkerStats(RecalculateWorkerStatsRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        Guid? id = string.IsNullOrEmpty(request.WorkerId) ? null : RegistryValidation.WorkerId(request.WorkerId);
        if (id is { } w)
        {
            _ = await directory.GetAsync(tenant, w, context.CancellationToken);
        }
        return new RecalculateWorkerStatsResponse { WorkersRecalculated = await outcomes.RecalculateAsync(tenant, id, context.CancellationToken) };
    }

    public override async Task<GetCircuitBreakerResponse> GetCircuitBreaker(GetCircuitBreakerRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RegistryValidation.WorkerId(request.WorkerId);
        return new GetCircuitBreakerResponse { CircuitBreaker = (await breakers.GetAsync(tenant, id, context.CancellationToken)).ToProto() };
    }

    public override async Task<ListCircuitBreakersResponse> ListCircuitBreakers(ListCircuitBreakersRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        v.DefinedEnum("state", request.State);
        var size = v.PageSize("page_size", request.PageSize, 50, 1000);
        var after = Guid.Empty;
        var paged = PageTokens.TryRead(v, request.PageToken, token => PageTokens.TryDecode(BreakersListing, token, out after));
        v.ThrowIfAny();
        var state = request.State == CircuitState.Unspecified ? null : WorkerMapper.CircuitName(request.State);
        var (list, next) = await breakers.ListAsync(tenant, state, size, paged ? after : null, context.CancellationToken);
        var response = new ListCircuitBreakersResponse { NextPageToken = next is { } n ? PageTokens.Encode(BreakersListing, n) : "" };
        response.CircuitBreakers.AddRange(list.Select(b => b.ToProto()));
        return response;
    }

    public override async Task<SendWorkerCommandResponse> SendWorkerCommand(SendWorkerCommandRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var id = v.Uuid("worker_id", request.WorkerId);
        var command = request.Command;
        switch (command?.CommandCase ?? WorkerCommand.CommandOneofCase.None)
        {
            case WorkerCommand.CommandOneofCase.Drain:
                v.Text("command.drain.reason", command!.Drain.Reason, 1024);
                break;
            case WorkerCommand.CommandOneofCase.CancelTask:
                v.Uuid("command.cancel_task.task_id", command!.CancelTask.TaskId);
                v.Text("command.cancel_task.reason", command.CancelTask.Reason, 1024);
                break;
            default:
                v.Add("command", "is required: drain or cancel_task");
                break;
        }
        v.ThrowIfAny();
        if (command!.CommandCase == WorkerCommand.CommandOneofCase.Drain)
        {
            // A drain also changes the worker's status (no new leases): the same path as DrainWorker.
            var reason = string.IsNullOrEmpty(command.Drain.Reason) ? "drained by an operator" : command.Drain.Reason;
            return new SendWorkerCommandResponse { Worker = (await directory.DrainAsync(tenant, id, reason, context.CancellationToken)).ToProto() };
        }
        var worker = await directory.GetAsync(tenant, id, context.CancellationToken);
        if (worker.DeregisteredAt is not null)
        {
            throw new PreconditionFailedException("WORKER_DEREGISTERED", $"Worker {id} is deregistered; it takes no commands.")
            {
                Metadata = { ["worker_id"] = id.ToString() },
            };
        }
        await mirror.PushCommandAsync(tenant, id, command);
        return new SendWorkerCommandResponse { Worker = worker.ToProto(await mirror.LiveAsync(tenant, id)) };
    }

    public override async Task<ListActiveTenantsResponse> ListActiveTenants(ListActiveTenantsRequest request, ServerCallContext context) =>
        new() { Tenants = { await directory.ActiveTenantsAsync(context.CancellationToken) } };

    public override async Task<ReconcileWorkersResponse> ReconcileWorkers(ReconcileWorkersRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        Guid? id = string.IsNullOrEmpty(request.WorkerId) ? null : v.Uuid("worker_id", request.WorkerId);
        v.ThrowIfAny();
        var (disagreements, examined) = await reconciliation.ReconcileAsync(tenant, id, request.DryRun, context.CancellationToken);
        var response = new ReconcileWorkersResponse { Examined = examined };
        response.Disagreements.AddRange(disagreements.Select(d => new WorkerDisagreement
        {
            WorkerId = d.WorkerId.ToString(),
            WorkerName = d.Name,
            PostgresStatus = WorkerMapper.ParseStatus(d.PostgresStatus),
            AliveInRedis = d.AliveInRedis,
            InRedis = d.InRedis,
            Action = d.Action switch
            {
                WorkerReconciliation.MarkLost => ReconcileAction.MarkLost,
                WorkerReconciliation.MarkRecovered => ReconcileAction.MarkRecovered,
                _ => ReconcileAction.RewriteMirror,
            },
            Applied = d.Applied,
        }));
        return response;
    }

    public override async Task<ResetCircuitBreakerResponse> ResetCircuitBreaker(ResetCircuitBreakerRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RegistryValidation.WorkerId(request.WorkerId);
        _ = await directory.GetAsync(tenant, id, context.CancellationToken);
        var breaker = await breakers.ChangeAsync(tenant, id, (_, _) => BreakerState.Initial, context.CancellationToken);
        return new ResetCircuitBreakerResponse { CircuitBreaker = breaker.ToProto() };
    }
}
