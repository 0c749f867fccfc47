using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
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

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
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
            return await continuation(requestStream, context);
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
            await continuation(requestStream, responseStream, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Map(ex, context);
        }
    }

    private RpcException Map(Exception ex, ServerCallContext context)
    {
        switch (ex)
        {
            case LifelineException domain:
                return ToRpcException(domain);
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return new RpcException(new Grpc.Core.Status(StatusCode.Cancelled, "The call was cancelled."));
            // Redis first: RedisTimeoutException is also a TimeoutException.
            case StackExchange.Redis.RedisException or StackExchange.Redis.RedisTimeoutException:
                LogTransientFailure(logger, context.Method, ex);
                return Unavailable("Redis is temporarily unavailable; retry shortly.", "REDIS_UNAVAILABLE");
            case NpgsqlException { IsTransient: true } or TimeoutException:
                LogTransientFailure(logger, context.Method, ex);
                return Unavailable("The database is temporarily unavailable; retry shortly.", "STORE_UNAVAILABLE");
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

    private static RpcException Unavailable(string message, string reason) => new Status
    {
        Code = (int)Code.Unavailable,
        Message = message,
        Details =
        {
            Any.Pack(new ErrorInfo { Reason = reason, Domain = Domain }),
            Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) }),
        },
    }.ToRpcException();

    /// <summary>Builds the rich status of a domain exception (also used outside the interceptor, e.g. per-item batch results).</summary>
    public static RpcException ToRpcException(LifelineException ex)
    {
        var status = new Status { Code = (int)ex.Code, Message = ex.Message };
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
        foreach (var (key, value) in ex.Metadata)
        {
            info.Metadata[key] = value;
        }
        status.Details.Add(Any.Pack(info));
        if (ex is ConcurrencyConflictException conflict)
        {
            status.Details.Add(Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(conflict.RetryAfter) }));
        }
        return status.ToRpcException();
    }

    [LoggerMessage(EventId = 9001, Level = LogLevel.Warning, Message = "Transient store failure in {Method}")]
    private static partial void LogTransientFailure(ILogger logger, string method, Exception exception);

    [LoggerMessage(EventId = 9002, Level = LogLevel.Error, Message = "Unexpected failure in {Method}")]
    private static partial void LogUnexpectedFailure(ILogger logger, string method, Exception exception);
}
