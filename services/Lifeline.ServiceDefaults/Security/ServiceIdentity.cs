using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// The identity a service presents when it calls another: subject and issuer <c>lifeline-&lt;service&gt;</c>, role
/// <see cref="Role.Service"/>, acting for the tenant a call names with <see cref="ActingFor"/> (or, without one,
/// across tenants). <see cref="Interceptor"/> turns that into a signed token on every outgoing call; the tenant
/// marker itself never leaves the process.
/// </summary>
public sealed class ServiceIdentity(IdentityTokens tokens, string serviceName)
{
    /// <summary>The client-side marker <see cref="Interceptor"/> replaces with the identity header.</summary>
    private const string ActingTenantKey = "x-lifeline-acting-for";

    public string Issuer { get; } = "lifeline-" + serviceName;

    /// <summary>Call metadata that makes the call act for <paramref name="tenant"/>.</summary>
    public static Metadata ActingFor(string tenant) => new() { { ActingTenantKey, tenant } };

    /// <summary>A client interceptor adding this service's identity to every call.</summary>
    public Interceptor Interceptor => new Adder(this);

    /// <summary>The identity header of a call acting for <paramref name="tenant"/> (null: across tenants).</summary>
    public Metadata.Entry Header(string? tenant) => new(IdentityTokens.HeaderName, tokens.Mint(Issuer, tenant, Role.Service, Issuer));

    private sealed class Adder(ServiceIdentity identity) : Interceptor
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
                if (entry.Key == ActingTenantKey)
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
}
