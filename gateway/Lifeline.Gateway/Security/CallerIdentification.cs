using Microsoft.Net.Http.Headers;

namespace Lifeline.Gateway.Security;

/// <summary>
/// Reads the credential of every request, <c>authorization: Bearer &lt;API key or JWT&gt;</c> or
/// <c>x-api-key: &lt;key&gt;</c>, and records the caller in a <see cref="CallerFeature"/>. It refuses nothing
/// itself: open endpoints (health, reflection, OpenAPI) ignore the result, proxied calls require a caller
/// (<see cref="RpcAuthorization"/>), and the rate limiter buckets by it.
/// </summary>
internal sealed class CallerIdentification(RequestDelegate next, ApiKeyStore apiKeys, JwtValidator jwt)
{
    public const string ApiKeyHeader = "x-api-key";

    public async Task InvokeAsync(HttpContext context)
    {
        context.Features.Set(await IdentifyAsync(context.Request).ConfigureAwait(false));
        await next(context).ConfigureAwait(false);
    }

    private async Task<CallerFeature> IdentifyAsync(HttpRequest request)
    {
        string? token = null;
        var authorization = request.Headers[HeaderNames.Authorization].ToString();
        if (authorization.Length > 0)
        {
            const string Bearer = "Bearer ";
            if (!authorization.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
            {
                return new CallerFeature { Presented = true, Rejection = "the authorization header must be 'Bearer' and an API key or JWT" };
            }

            token = authorization[Bearer.Length..].Trim();
        }
        else if (request.Headers[ApiKeyHeader].ToString() is { Length: > 0 } key)
        {
            token = key.Trim();
        }

        if (string.IsNullOrEmpty(token))
        {
            return new CallerFeature();
        }

        if (JwtValidator.LooksLikeJwt(token) && jwt.Enabled)
        {
            var (caller, rejection) = await jwt.ValidateAsync(token).ConfigureAwait(false);
            return new CallerFeature { Presented = true, Caller = caller, Rejection = rejection };
        }

        return apiKeys.Find(token) is { } keyCaller
            ? new CallerFeature { Presented = true, Caller = keyCaller }
            : new CallerFeature { Presented = true, Rejection = "the API key is not known" };
    }
}
