using Microsoft.Extensions.DependencyInjection;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Lifeline.ServiceDefaults.Validation;
using Npgsql;
using Status = Google.Rpc.Status;

namespace Lifeline.ServiceDefaults.Errors;

/// <summary>
/// Maps domain exceptions to gRPC status codes with <c>google.rpc</c> details (BadRequest,
/// ErrorInfo with domain <c>lifeline</c>, RetryInfo). Anything unexpected becomes INTERNAL with a
/// generic message — never UNKNOWN, never a leaked stack trace.
/// </summary>
public sealed partial class ErrorMappingInterceptor(ILogger<ErrorMappingInterceptor> logger) : Interceptor
{
    public const string Domain = "lifeline";

    // Bounds on what one error carries: the status travels in HTTP/2 trailers (grpc-message and
    // grpc-status-details-bin), which proxies limit (the gateway: 64 KiB of headers). Far below that.
    private const int MaxMessageLength = 1000;
    private const int MaxMetadataEntries = 16;
    private const int MaxMetadataValueLength = 256;

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            ContractGuard.ThrowIfInvalid(request);
            var handler = continuation(request, context);
            if (Grpc.CallTimeLimit.LimitToken(context) is not { } limit)
            {
                return await handler;
            }
            try
            {
                // The caller is answered at the limit even if the handler is stuck in a wait that ignores its token.
                return await handler.WaitAsync(limit);
            }
            catch (OperationCanceledException) when (!handler.IsCompleted)
            {
                _ = handler.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                    TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                throw;
            }
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Map(ex, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            ContractGuard.ThrowIfInvalid(request);
            await continuation(request, responseStream, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Map(ex, context);
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context,
        ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(new GuardedStream<TRequest>(requestStream), context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Map(ex, context);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(new GuardedStream<TRequest>(requestStream), responseStream, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Map(ex, context);
        }
    }

    private RpcException Map(Exception ex, ServerCallContext context)
    {
        if (ex is LifelineException domain)
        {
            return ToRpcException(domain);
        }
        if (ex is OperationCanceledException && Grpc.CallTimeLimit.Expired(context) is { } limit)
        {
            LogTimeLimit(logger, context.Method, limit.TotalSeconds);
            return Retryable(Code.DeadlineExceeded,
                $"The call did not finish within the service's limit of {limit.TotalSeconds:0.#} s; retry shortly.", "SERVER_TIME_LIMIT");
        }
        // The caller went away: a cancelled wait, or a stream the client reset under a read or write (Kestrel's
        // IOException, not a store's — those come wrapped in NpgsqlException). Nobody hears the answer; nothing failed.
        if (ex is OperationCanceledException or System.IO.IOException && context.CancellationToken.IsCancellationRequested)
        {
            return new RpcException(new global::Grpc.Core.Status(StatusCode.Cancelled, "The call was cancelled."));
        }
        // EF Core and others wrap the store's exception: judge by the innermost cause we know.
        switch (Cause(ex))
        {
            // Redis first: RedisTimeoutException is also a TimeoutException.
            case StackExchange.Redis.RedisException or StackExchange.Redis.RedisTimeoutException:
                LogTransientFailure(logger, context.Method, ex);
                return Unavailable("Redis is temporarily unavailable; retry shortly.", "REDIS_UNAVAILABLE");
            case NpgsqlException { IsTransient: true } or TimeoutException or System.IO.IOException or System.Net.Sockets.SocketException:
                LogTransientFailure(logger, context.Method, ex);
                DropPooledConnectionsIfBroken(ex, context);
                return Unavailable("The database is temporarily unavailable; retry shortly.", "STORE_UNAVAILABLE");
            case RpcException { StatusCode: StatusCode.Unavailable or StatusCode.DeadlineExceeded }:
                LogTransientFailure(logger, context.Method, ex);
                return Unavailable("A service this call depends on is temporarily unavailable; retry shortly.", "DEPENDENCY_UNAVAILABLE");
            default:
                LogUnexpectedFailure(logger, context.Method, ex);
                return new Status
                {
                    Code = (int)Code.Internal,
                    Message = "Internal error; it has been logged.",
                    Details = { Any.Pack(new ErrorInfo { Reason = "INTERNAL", Domain = Domain }) },
                }.ToRpcException();
        }
    }

    /// <summary>
    /// A connection that broke under a call (reset, closed by a restarting server) means its idle siblings in the
    /// pool are most likely broken too: drop them all, so the next calls open fresh connections instead of each
    /// finding a dead one.
    /// </summary>
    private static void DropPooledConnectionsIfBroken(Exception ex, ServerCallContext context)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is System.IO.IOException or System.Net.Sockets.SocketException or System.IO.EndOfStreamException)
            {
                try
                {
                    var services = context.GetHttpContext().RequestServices;
                    services.GetService<NpgsqlDataSource>()?.Clear();
                    services.GetKeyedService<NpgsqlDataSource>(Postgres.ServiceDataSource.HotPathKey)?.Clear();
                }
                catch (InvalidOperationException)
                {
                    // not hosted over HTTP
                }
                return;
            }
        }
    }

    /// <summary>The first exception in the chain that says what failed (Redis, PostgreSQL, a peer, a timeout), else <paramref name="ex"/>.</summary>
    private static Exception Cause(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is StackExchange.Redis.RedisException or NpgsqlException or TimeoutException or RpcException
                or System.IO.IOException or System.Net.Sockets.SocketException)
            {
                return e;
            }
        }
        return ex;
    }

    private static RpcException Unavailable(string message, string reason) => Retryable(Code.Unavailable, message, reason);

    private static RpcException Retryable(Code code, string message, string reason) => new Status
    {
        Code = (int)code,
        Message = message,
        Details =
        {
            Any.Pack(new ErrorInfo { Reason = reason, Domain = Domain }),
            Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) }),
        },
    }.ToRpcException();

    /// <summary>Builds the rich status of a domain exception (also used outside the interceptor, e.g. per-item batch results).</summary>
    public static RpcException ToRpcException(LifelineException ex) => ToStatus(ex).ToRpcException();

    /// <summary>The <c>google.rpc.Status</c> of a domain exception, bounded in size (also written as JSON to REST callers).</summary>
    public static Status ToStatus(LifelineException ex)
    {
        var status = new Status { Code = (int)ex.Code, Message = ValidationException.Clip(ex.Message, MaxMessageLength) };
        if (ex is ValidationException validation)
        {
            var badRequest = new BadRequest();
            foreach (var v in validation.Violations)
            {
                badRequest.FieldViolations.Add(new BadRequest.Types.FieldViolation { Field = v.Field, Description = v.Description });
            }
            status.Details.Add(Any.Pack(badRequest));
        }
        var info = new ErrorInfo { Reason = ex.Reason, Domain = Domain };
        foreach (var (key, value) in ex.Metadata.Take(MaxMetadataEntries))
        {
            info.Metadata[ValidationException.Clip(key, 64)] = ValidationException.Clip(value, MaxMetadataValueLength);
        }
        if (ex is ValidationException { Total: var total } && total > ((ValidationException)ex).Violations.Count)
        {
            info.Metadata["violations_total"] = total.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        status.Details.Add(Any.Pack(info));
        if (ex is ConcurrencyConflictException conflict)
        {
            status.Details.Add(Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(conflict.RetryAfter) }));
        }
        return status;
    }

    [LoggerMessage(EventId = 9001, Level = LogLevel.Warning, Message = "Transient store failure in {Method}")]
    private static partial void LogTransientFailure(ILogger logger, string method, Exception exception);

    [LoggerMessage(EventId = 9003, Level = LogLevel.Warning, Message = "{Method} did not finish within the service's limit of {LimitSeconds} s")]
    private static partial void LogTimeLimit(ILogger logger, string method, double limitSeconds);

    [LoggerMessage(EventId = 9002, Level = LogLevel.Error, Message = "Unexpected failure in {Method}")]
    private static partial void LogUnexpectedFailure(ILogger logger, string method, Exception exception);
}

/// <summary>A client stream whose every message passes <see cref="ContractGuard"/> before the handler reads it.</summary>
internal sealed class GuardedStream<T>(IAsyncStreamReader<T> inner) : IAsyncStreamReader<T>
{
    public T Current => inner.Current;

    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        if (!await inner.MoveNext(cancellationToken))
        {
            return false;
        }
        ContractGuard.ThrowIfInvalid(inner.Current);
        return true;
    }
}
