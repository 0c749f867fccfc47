using Grpc.Core;
using Grpc.Core.Interceptors;
using Lifeline.ServiceDefaults.Security;

namespace Lifeline.ServiceDefaults.Clients;

/// <summary>
/// The one client interceptor that says who calls: every call of a service client
/// (<see cref="ServiceClientRegistration.AddServiceClient{TClient}"/>) carries this service's identity token
/// (<see cref="IdentityTokens.HeaderName"/>, minted by <see cref="ServiceIdentity"/>), acting for the tenant the call
/// names with <see cref="ServiceCall.For"/>, or across tenants without one. The tenant marker is removed, and an
/// identity header a caller put in the options is replaced: a service never forwards somebody else's token.
/// </summary>
public sealed class IdentityPropagation(ServiceIdentity identity) : Interceptor
{
    public override TResponse BlockingUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
        BlockingUnaryCallContinuation<TRequest, TResponse> continuation) => continuation(request, With(context));

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
        AsyncUnaryCallContinuation<TRequest, TResponse> continuation) => continuation(request, With(context));

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request,
        ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, With(context));

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(With(context));

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(With(context));

    private ClientInterceptorContext<TRequest, TResponse> With<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context)
        where TRequest : class where TResponse : class
    {
        var headers = new Metadata();
        string? tenant = null;
        foreach (var entry in context.Options.Headers ?? [])
        {
            if (entry.Key == ServiceCall.ActingForKey)
            {
                tenant = entry.Value;
            }
            else if (entry.Key != IdentityTokens.HeaderName)
            {
                headers.Add(entry);
            }
        }
        headers.Add(identity.Header(tenant));
        return new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, context.Options.WithHeaders(headers));
    }
}
