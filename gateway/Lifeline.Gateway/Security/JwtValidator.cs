using Lifeline.ServiceDefaults.Security;
using System.Security.Claims;
using System.Text;
using Lifeline.Gateway.Options;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Lifeline.Gateway.Security;

/// <summary>
/// Validates HS256 JWT bearer tokens when <c>Gateway:Jwt:SigningKey</c> is set: signature, lifetime, and issuer /
/// audience when configured. The token must carry <c>tenant</c> and <c>role</c> or <c>roles</c> (the highest known
/// role counts); <c>sub</c> names the caller.
/// </summary>
internal sealed class JwtValidator
{
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly TokenValidationParameters? _parameters;

    public JwtValidator(IOptions<GatewayOptions> options)
    {
        var jwt = options.Value.Jwt;
        if (jwt.SigningKey.Length == 0)
        {
            return;
        }

        _parameters = new TokenValidationParameters
        {
            IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(jwt.SigningKey)),
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            ValidateIssuer = !string.IsNullOrEmpty(jwt.Issuer),
            ValidIssuer = jwt.Issuer,
            ValidateAudience = !string.IsNullOrEmpty(jwt.Audience),
            ValidAudience = jwt.Audience,
            ValidateLifetime = true,
            ClockSkew = TimeSpan.FromSeconds(30),
        };
    }

    public bool Enabled => _parameters is not null;

    /// <summary>Whether <paramref name="token"/> is shaped like a JWT (three base64url parts) rather than an API key.</summary>
    public static bool LooksLikeJwt(string token) => token.Count(c => c == '.') == 2;

    /// <returns>The caller, or the reason the token is refused.</returns>
    public async Task<(Caller? Caller, string? Rejection)> ValidateAsync(string token)
    {
        if (_parameters is null)
        {
            return (null, "JWT bearer tokens are not accepted by this gateway");
        }

        var result = await _handler.ValidateTokenAsync(token, _parameters).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return (null, "the JWT is not valid (signature, lifetime, issuer or audience)");
        }

        var identity = result.ClaimsIdentity;
        var tenant = identity.FindFirst("tenant")?.Value;
        if (tenant is null || !GatewayOptionsValidator.TenantPattern().IsMatch(tenant))
        {
            return (null, "the JWT has no valid 'tenant' claim");
        }

        Role? best = null;
        foreach (var claim in identity.FindAll(c => c.Type is "role" or "roles" || c.Type == ClaimTypes.Role))
        {
            foreach (var value in claim.Value.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
            {
                if (Roles.TryParse(value, out var role) && Roles.CredentialRoles.Contains(role) && (best is null || role > best))
                {
                    best = role;
                }
            }
        }

        if (best is null)
        {
            return (null, "the JWT has no 'role' or 'roles' claim naming reader, worker, operator or platform-admin");
        }

        var subject = identity.FindFirst("sub")?.Value ?? $"{tenant}/{best.Value.Name()}";
        return (new Caller(subject, tenant, best.Value, "jwt:" + subject), null);
    }
}
