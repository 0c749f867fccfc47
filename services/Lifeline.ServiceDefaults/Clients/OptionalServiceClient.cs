using System.Diagnostics.CodeAnalysis;

namespace Lifeline.ServiceDefaults.Clients;

/// <summary>
/// The client of a service this one works without
/// (<see cref="ServiceClientRegistration.AddOptionalServiceClient{TClient}"/>): <see cref="Client"/> is null when
/// <c>services:&lt;service&gt;:grpc:0</c> is not set, and the caller says what it does instead.
/// </summary>
public sealed class OptionalServiceClient<TClient>(string service, TClient? client) where TClient : class
{
    /// <summary>The service's name in configuration (<c>services:&lt;name&gt;:grpc:0</c>).</summary>
    public string Service { get; } = service;

    public TClient? Client { get; } = client;

    [MemberNotNullWhen(true, nameof(Client))]
    public bool IsConfigured => Client is not null;

    /// <summary>The client, or an <see cref="InvalidOperationException"/> naming the missing setting.</summary>
    public TClient Required => Client ?? throw PeerServices.NotConfigured(Service);
}
