using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Security;

/// <summary>
/// The API key scheme: <c>authorization: Bearer &lt;key&gt;</c> or <c>x-api-key: &lt;key&gt;</c>. The key is hashed
/// and looked up among the configured hashes (<see cref="ApiKeyAuthenticationOptions"/>); no credential is no
/// result (anonymous), an unknown or malformed one a failure with the reason. A JWT-shaped bearer token only
/// comes here when the gateway accepts no JWTs (<see cref="GatewayAuthentication"/>).
/// </summary>
internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<ApiKeyAuthenticationOptions> options, ILoggerFactory logger, UrlEncoder encoder, CredentialRefusals refusals)
    : AuthenticationHandler<ApiKeyAuthenticationOptions>(options, logger, encoder)
{
    public const string HeaderName = "x-api-key";

    /// <summary>Lowercase hex SHA-256 of the key's UTF-8 bytes, as configured in <c>Gateway:ApiKeys:n:Sha256</c>.</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string key;
        if (GatewayAuthentication.ReadBearer(Request) is { } bearer)
        {
            if (bearer.Token is not { } token)
            {
                return Task.FromResult(AuthenticateResult.Fail("the authorization header must be 'Bearer' and an API key or JWT"));
            }

            key = token;
        }
        else if (Request.Headers[HeaderName].ToString().Trim() is { Length: > 0 } header)
        {
            key = header;
        }
        else
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        return Task.FromResult(Options.CallersBySha256.TryGetValue(Hash(key), out var caller)
            ? AuthenticateResult.Success(new AuthenticationTicket(caller.ToPrincipal(), Scheme.Name))
            : AuthenticateResult.Fail("the API key is not known"));
    }

    /// <summary>Refusals are written by <see cref="CredentialRefusals"/>, in the caller's protocol.</summary>
    protected override async Task HandleChallengeAsync(AuthenticationProperties properties) =>
        await refusals.UnauthenticatedAsync(Context, (await HandleAuthenticateOnceSafeAsync().ConfigureAwait(false)).Failure).ConfigureAwait(false);
}
