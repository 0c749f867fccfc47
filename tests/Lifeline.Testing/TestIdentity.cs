using Grpc.Core;
using Grpc.Core.Interceptors;
using Lifeline.ServiceDefaults.Security;
using Microsoft.Extensions.Options;

namespace Lifeline.Testing;

/// <summary>
/// The internal identity of test suites: every service, gateway and benchmark a test starts shares
/// <see cref="SigningKey"/>, and tests that call a service directly present a token minted with it, as the gateway
/// or another service would.
/// </summary>
public static class TestIdentity
{
    /// <summary>The suite signing key of tests (never used outside them).</summary>
    public const string SigningKey = "lifeline-test-identity-key-0123456789abcdef";

    /// <summary>The issuer tests mint tokens as.</summary>
    public const string Issuer = "lifeline-tests";

    /// <summary>The settings a process started by a test needs (configuration keys).</summary>
    public static IReadOnlyDictionary<string, string?> Settings { get; } = new Dictionary<string, string?>
    {
        [IdentityOptions.Section + ":SigningKey"] = SigningKey,
    };

    /// <summary>The same as environment variables (<c>Lifeline__Identity__SigningKey</c>).</summary>
    public static IReadOnlyDictionary<string, string> Environment { get; } =
        Settings.ToDictionary(kv => kv.Key.Replace(":", "__", StringComparison.Ordinal), kv => kv.Value!);

    public static IdentityTokens Tokens { get; } = new(Options.Create(new IdentityOptions { SigningKey = SigningKey }));

    /// <summary>An identity header for <paramref name="role"/> acting for <paramref name="tenant"/>.</summary>
    public static Metadata.Entry Header(string? tenant, Role role = Role.Service, string subject = "test") =>
        new(IdentityTokens.HeaderName, Tokens.Mint(subject, tenant, role, Issuer));

    /// <summary><paramref name="invoker"/> with an identity on every call (minted per call: tokens expire).</summary>
    public static CallInvoker As(this CallInvoker invoker, string? tenant, Role role = Role.Service, string subject = "test") =>
        invoker.As(Tokens, tenant, role, subject);

    /// <summary>The same with another suite's key (a suite the AppHost started has its own).</summary>
    public static CallInvoker As(this CallInvoker invoker, IdentityTokens tokens, string? tenant, Role role = Role.Service, string subject = "test") =>
        invoker.Intercept(metadata =>
        {
            metadata.Add(new Metadata.Entry(IdentityTokens.HeaderName, tokens.Mint(subject, tenant, role, Issuer)));
            return metadata;
        });
}
