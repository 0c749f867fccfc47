using System.Text;
using Lifeline.Gateway.Options;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using Microsoft.Net.Http.Headers;

namespace Lifeline.Gateway.Security;

/// <summary>
/// The gateway's authentication and authorization, on ASP.NET Core's own stack. The default scheme
/// (<see cref="CredentialScheme"/>) forwards each request to <see cref="JwtBearerDefaults.AuthenticationScheme"/>
/// when its bearer token is shaped like a JWT and <c>Gateway:Jwt:SigningKey</c> is set, else to
/// <see cref="ApiKeyScheme"/>; both yield a <see cref="GatewayCaller"/>. Each proxied route requires the policy of
/// the role <see cref="ServiceDefaults.Security.RpcPermissions"/> names for its RPC (<see cref="RoleRequirement"/>);
/// refusals are the gateway's own (<see cref="CredentialRefusals"/>). Health, reflection, the OpenAPI document and
/// unknown routes carry no policy and stay open.
/// </summary>
internal static class GatewayAuthentication
{
    public const string CredentialScheme = "Credential";
    public const string ApiKeyScheme = "ApiKey";

    private const string BearerPrefix = "Bearer ";

    /// <summary>An <c>authorization</c> header; <see cref="Token"/> is null when it is not <c>Bearer</c> and a token.</summary>
    public sealed record Bearer(string? Token);

    public static IServiceCollection AddGatewayAuthentication(this IServiceCollection services)
    {
        services.AddSingleton<CredentialRefusals>();
        services.AddSingleton<JwtCredentialEvents>();
        services.AddSingleton<IConfigureOptions<ApiKeyAuthenticationOptions>, ApiKeyAuthenticationSetup>();
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<GatewayOptions>>((jwt, gateway) => ConfigureJwt(jwt, gateway.Value.Jwt));

        services.AddAuthentication(CredentialScheme)
            .AddPolicyScheme(CredentialScheme, "API key or JWT", options => options.ForwardDefaultSelector = SelectScheme)
            .AddJwtBearer()
            .AddScheme<ApiKeyAuthenticationOptions, ApiKeyAuthenticationHandler>(ApiKeyScheme, configureOptions: null);

        services.AddAuthorization(RoleRequirement.AddPolicies);
        services.AddSingleton<IAuthorizationHandler, RoleRequirementHandler>();
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, RefusingAuthorizationResultHandler>();
        return services;
    }

    /// <summary>The request's <c>authorization</c> header, or null when there is none.</summary>
    public static Bearer? ReadBearer(HttpRequest request)
    {
        var authorization = request.Headers[HeaderNames.Authorization].ToString();
        if (authorization.Length == 0)
        {
            return null;
        }

        return authorization.StartsWith(BearerPrefix, StringComparison.OrdinalIgnoreCase) && authorization[BearerPrefix.Length..].Trim() is { Length: > 0 } token
            ? new Bearer(token)
            : new Bearer(null);
    }

    /// <summary>Whether <paramref name="token"/> is shaped like a JWT (three dot-separated parts) rather than an API key.</summary>
    public static bool LooksLikeJwt(string token) => token.Count(c => c == '.') == 2;

    private static string SelectScheme(HttpContext context) =>
        ReadBearer(context.Request)?.Token is { } token && LooksLikeJwt(token)
        && context.RequestServices.GetRequiredService<IOptions<GatewayOptions>>().Value.Jwt.SigningKey.Length > 0
            ? JwtBearerDefaults.AuthenticationScheme
            : ApiKeyScheme;

    /// <summary>HS256 only, under the configured key; issuer and audience when configured; lifetime with 30 s of skew.</summary>
    private static void ConfigureJwt(JwtBearerOptions options, JwtOptions jwt)
    {
        options.MapInboundClaims = false;
        options.IncludeErrorDetails = false;
        options.EventsType = typeof(JwtCredentialEvents);
        options.TokenValidationParameters = new TokenValidationParameters
        {
            // Without a key no request is forwarded here (SelectScheme); an empty key cannot be constructed.
            IssuerSigningKey = jwt.SigningKey.Length > 0 ? new SymmetricSecurityKey(Encoding.UTF8.GetBytes(jwt.SigningKey)) : null,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ValidateLifetime = true,
            ClockSkew = TimeSpan.FromSeconds(30),
            ValidateIssuer = !string.IsNullOrEmpty(jwt.Issuer),
            ValidIssuer = jwt.Issuer,
            ValidateAudience = !string.IsNullOrEmpty(jwt.Audience),
            ValidAudience = jwt.Audience,
            NameClaimType = GatewayCaller.NameClaim,
            RoleClaimType = GatewayCaller.RoleClaim,
        };
    }
}
