using Lifeline.ServiceDefaults.Security;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TenantIds = Lifeline.ServiceDefaults.Tenancy.Tenant;

namespace Lifeline.Gateway.Security;

/// <summary>
/// What the JWT bearer scheme adds to ASP.NET Core's validation (signature, algorithm, lifetime, issuer, audience):
/// the token must name a valid <c>tenant</c> and, in <c>role</c> or <c>roles</c>, at least one role a credential may
/// hold (the highest counts; <c>service</c> is none of them); the principal is then the same as an API key's
/// (<see cref="GatewayCaller"/>). Failures get a reason a caller can act on, and a challenge is the gateway's
/// refusal (<see cref="CredentialRefusals"/>), not JwtBearer's own 401.
/// </summary>
internal sealed class JwtCredentialEvents(CredentialRefusals refusals) : JwtBearerEvents
{
    public override Task TokenValidated(TokenValidatedContext context)
    {
        if (context.SecurityToken is JsonWebToken { Typ: IdentityTokens.TokenType })
        {
            // Only when Gateway:Jwt:SigningKey is the suite's identity key: a token meant for the services is no credential.
            context.Fail("an internal identity token is not a credential");
            return Task.CompletedTask;
        }

        var claims = context.Principal?.Claims.ToList() ?? [];
        var tenants = claims.Where(c => c.Type == GatewayCaller.TenantClaim).Select(c => c.Value).ToList();
        if (tenants is not [var tenant] || !TenantIds.IsValid(tenant))
        {
            context.Fail("the JWT has no valid 'tenant' claim (one tenant id: 1 to 64 lowercase letters, digits, '-' and '_')");
            return Task.CompletedTask;
        }

        Role? best = null;
        foreach (var claim in claims.Where(c => c.Type is "role" or "roles"))
        {
            foreach (var value in claim.Value.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
            {
                if (Roles.TryParse(value, out var role) && Roles.CredentialRoles.Contains(role) && (best is null || role > best))
                {
                    best = role;
                }
            }
        }

        if (best is not { } granted)
        {
            context.Fail("the JWT has no 'role' or 'roles' claim naming reader, worker, operator or platform-admin");
            return Task.CompletedTask;
        }

        var subject = claims.FirstOrDefault(c => c.Type == GatewayCaller.NameClaim)?.Value is { Length: > 0 } sub ? sub : $"{tenant}/{granted.Name()}";
        context.Principal = new GatewayCaller(subject, tenant, granted, GatewayCaller.JwtCredential).ToPrincipal();
        return Task.CompletedTask;
    }

    public override Task AuthenticationFailed(AuthenticationFailedContext context)
    {
        context.Fail(Reason(context.Exception));
        return Task.CompletedTask;
    }

    public override Task Challenge(JwtBearerChallengeContext context)
    {
        context.HandleResponse();
        return refusals.UnauthenticatedAsync(context.HttpContext, context.AuthenticateFailure);
    }

    /// <summary>Why the token was refused, in words for the caller (IdentityModel's own messages name internals).</summary>
    private static string Reason(Exception exception) => exception switch
    {
        SecurityTokenExpiredException => "the JWT has expired",
        SecurityTokenNotYetValidException => "the JWT is not valid yet",
        SecurityTokenNoExpirationException => "the JWT has no expiry ('exp')",
        SecurityTokenInvalidLifetimeException => "the JWT's lifetime is not valid",
        SecurityTokenInvalidIssuerException => "the JWT's issuer is not accepted",
        SecurityTokenInvalidAudienceException => "the JWT's audience is not accepted",
        SecurityTokenInvalidAlgorithmException => "the JWT must be signed with HS256",
        SecurityTokenInvalidSignatureException => "the JWT's signature is not valid (HS256 with the gateway's key)",
        SecurityTokenMalformedException => "the JWT is malformed",
        _ => "the JWT is not valid",
    };
}
