using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Lifeline.ServiceDefaults.Grpc;

/// <summary>
/// A client interceptor that gives every call without a deadline one: <see cref="Unary"/> for unary calls,
/// <see cref="Streaming"/> for streams. A service calling another service (and a test calling a service)
/// can then never wait forever on a peer that stopped answering.
/// </summary>
public sealed class DefaultDeadline(TimeSpan unary, TimeSpan streaming) : Interceptor
{
    /// <summary>30 s for unary calls, 1 h for streams: the defaults for service-to-service calls.</summary>
    public static DefaultDeadline ForServices { get; } = new(TimeSpan.FromSeconds(30), TimeSpan.FromHours(1));

    public TimeSpan Unary { get; } = unary;

    public TimeSpan Streaming { get; } = streaming;

    private ClientInterceptorContext<TRequest, TResponse> With<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, TimeSpan limit)
        where TRequest : class where TResponse : class =>
        context.Options.Deadline is null
            ? new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, context.Options.WithDeadline(DateTime.UtcNow + limit))
            : context;

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, With(context, Unary));

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, With(context, Unary));

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, With(context, Streaming));

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(With(context, Streaming));

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(With(context, Streaming));
}
