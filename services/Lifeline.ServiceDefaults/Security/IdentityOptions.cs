using System.Text;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// The suite's internal identity (section <c>Lifeline:Identity</c>): the key the gateway and the services sign and
/// verify identity tokens with, and how long a token lives. Every process of one suite shares the key; the
/// AppHost generates one per data directory.
/// </summary>
public sealed class IdentityOptions
{
    public const string Section = "Lifeline:Identity";

    /// <summary>The HMAC-SHA256 key, at least 32 bytes of UTF-8 text. Required: a service without it does not start.</summary>
    public string SigningKey { get; set; } = "";

    /// <summary>How long a minted token is accepted (a stream is checked when it opens). One minute to one hour.</summary>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The problems with these settings; empty when they can be used.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (Encoding.UTF8.GetByteCount(SigningKey) < 32)
        {
            problems.Add($"{Section}:SigningKey must be set to at least 32 bytes of text (every process of the suite shares it; ./build/run.sh generates one)");
        }
        if (TokenLifetime < TimeSpan.FromMinutes(1) || TokenLifetime > TimeSpan.FromHours(1))
        {
            problems.Add($"{Section}:TokenLifetime must be between 00:01:00 and 01:00:00");
        }
        return problems;
    }
}

public static class IdentityRegistration
{
    /// <summary>
    /// The suite's identity settings (validated at start: a process without the signing key does not start) and
    /// <see cref="IdentityTokens"/>.
    /// </summary>
    public static IServiceCollection AddLifelineIdentity(this IServiceCollection services)
    {
        services.AddOptions<IdentityOptions>()
            .BindConfiguration(IdentityOptions.Section)
            .Validate(o => o.Problems().Count == 0,
                "Lifeline:Identity:SigningKey must be at least 32 bytes of text shared by the gateway and every service (./build/run.sh generates one), and Lifeline:Identity:TokenLifetime between 00:01:00 and 01:00:00")
            .ValidateOnStart();
        services.AddSingleton<IdentityTokens>();
        return services;
    }
}
