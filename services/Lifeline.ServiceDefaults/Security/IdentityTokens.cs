using System.Collections.Concurrent;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// Mints and verifies the short-lived identity tokens that carry a caller from the gateway to a service, and from
/// one service to another, in the <see cref="HeaderName"/> header: a JWT signed with HMAC-SHA256 under the suite's
/// key (<see cref="IdentityOptions"/>), of type <c>lifeline-identity+jwt</c>, audience <c>lifeline-services</c>,
/// with the claims <c>sub</c>, <c>role</c> and (unless a service acts across tenants) <c>tenant</c>.
/// A minted token is reused until half its life has passed; a verified one is remembered until it expires,
/// so the cryptography runs about once per caller per few minutes, not once per call.
/// </summary>
public sealed partial class IdentityTokens
{
    public const string HeaderName = "x-lifeline-identity";
    public const string Audience = "lifeline-services";
    public const string TokenType = "lifeline-identity+jwt";

    private const int MaxTokenLength = 4096;
    private const int MaxRemembered = 10_000;
    private static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(30);

    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false, SetDefaultTimesOnTokenCreation = false };
    private readonly SigningCredentials _credentials;
    private readonly TokenValidationParameters _validation;
    private readonly TimeSpan _lifetime;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<(string Subject, string? Tenant, Role Role, string Issuer), (string Token, DateTimeOffset RenewAt)> _minted = new();
    private readonly ConcurrentDictionary<string, CallerIdentity> _verified = new(StringComparer.Ordinal);

    public IdentityTokens(IOptions<IdentityOptions> options, TimeProvider? time = null)
    {
        var settings = options.Value;
        if (settings.Problems() is { Count: > 0 } problems)
        {
            throw new InvalidOperationException(string.Join("; ", problems));
        }
        var key = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(settings.SigningKey));
        _credentials = new SigningCredentials(key, SecurityAlgorithms.HmacSha256);
        _lifetime = settings.TokenLifetime;
        _time = time ?? TimeProvider.System;
        _validation = new TokenValidationParameters
        {
            IssuerSigningKey = key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            ValidTypes = [TokenType],
            ValidateIssuer = true,
            IssuerValidator = (issuer, _, _) => IssuerPattern().IsMatch(issuer) ? issuer : throw new SecurityTokenInvalidIssuerException("unknown issuer"),
            ValidAudience = Audience,
            ValidateLifetime = true,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ClockSkew = ClockSkew,
            LifetimeValidator = (notBefore, expires, _, _) =>
            {
                var now = _time.GetUtcNow().UtcDateTime;
                return expires is { } e && e + ClockSkew > now && (notBefore is not { } n || n - ClockSkew <= now);
            },
        };
    }

    /// <summary>
    /// A token naming <paramref name="subject"/> in <paramref name="role"/>, acting for <paramref name="tenant"/>
    /// (null: a service acting across tenants), vouched for by <paramref name="issuer"/> (<c>lifeline-…</c>).
    /// </summary>
    public string Mint(string subject, string? tenant, Role role, string issuer)
    {
        var now = _time.GetUtcNow();
        var key = (subject, tenant, role, issuer);
        if (_minted.TryGetValue(key, out var cached) && cached.RenewAt > now)
        {
            return cached.Token;
        }
        var claims = new Dictionary<string, object> { ["role"] = role.Name() };
        if (tenant is not null)
        {
            claims["tenant"] = tenant;
        }
        var token = _handler.CreateToken(new SecurityTokenDescriptor
        {
            Subject = new System.Security.Claims.ClaimsIdentity([new System.Security.Claims.Claim("sub", subject)]),
            Claims = claims,
            Issuer = issuer,
            Audience = Audience,
            TokenType = TokenType,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = (now + _lifetime).UtcDateTime,
            SigningCredentials = _credentials,
        });
        if (_minted.Count > MaxRemembered)
        {
            _minted.Clear();
        }
        _minted[key] = (token, now + _lifetime / 2);
        return token;
    }

    /// <returns>The identity the token carries, or why it is refused.</returns>
    public async ValueTask<(CallerIdentity? Identity, string? Refusal)> VerifyAsync(string token)
    {
        var now = _time.GetUtcNow();
        if (_verified.TryGetValue(token, out var known))
        {
            return known.Expires + ClockSkew > now ? (known, null) : (null, "the identity token has expired");
        }
        if (token.Length > MaxTokenLength)
        {
            return (null, "the identity token is too long");
        }

        var result = await _handler.ValidateTokenAsync(token, _validation).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return (null, result.Exception is SecurityTokenExpiredException or SecurityTokenInvalidLifetimeException
                ? "the identity token has expired"
                : "the identity token is not valid (signature, type, audience, issuer or lifetime)");
        }

        var jwt = (JsonWebToken)result.SecurityToken;
        if (!jwt.TryGetPayloadValue<string>("role", out var roleName) || !Roles.TryParse(roleName, out var role))
        {
            return (null, "the identity token names no known role");
        }
        string? tenant = jwt.TryGetPayloadValue<string>("tenant", out var t) ? t : null;
        if (tenant is not null && !Tenancy.Tenant.IsValid(tenant))
        {
            return (null, "the identity token's tenant is not a valid tenant id");
        }
        if (tenant is null && role != Role.Service)
        {
            return (null, "the identity token names no tenant");
        }
        if (!jwt.TryGetPayloadValue<string>("sub", out var subject) || string.IsNullOrEmpty(subject))
        {
            return (null, "the identity token names no subject");
        }

        var identity = new CallerIdentity(subject, tenant, role, jwt.Issuer, new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero));
        if (_verified.Count > MaxRemembered)
        {
            _verified.Clear();
        }
        _verified[token] = identity;
        return (identity, null);
    }

    [GeneratedRegex("^lifeline-[a-z0-9-]{1,40}$")]
    private static partial Regex IssuerPattern();
}
