using Lifeline.ServiceDefaults.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;

namespace Lifeline.Gateway.Security;

/// <summary>
/// What the authorization middleware does with a refused call: instead of a scheme's challenge or forbid (a bare
/// 401 or 403 that a gRPC client cannot read), the refusal of <see cref="CredentialRefusals"/>, with the reason.
/// </summary>
internal sealed class RefusingAuthorizationResultHandler(CredentialRefusals refusals) : IAuthorizationMiddlewareResultHandler
{
    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        if (authorizeResult.Challenged)
        {
            // A scheme authenticates once per request: this is the result UseAuthentication saw, with its failure if any.
            var authentication = await context.AuthenticateAsync().ConfigureAwait(false);
            await refusals.UnauthenticatedAsync(context, authentication.Failure).ConfigureAwait(false);
        }
        else if (authorizeResult.Forbidden)
        {
            var required = policy.Requirements.OfType<RoleRequirement>().Select(r => r.Least).DefaultIfEmpty(Role.Service).Max();
            await refusals.PermissionDeniedAsync(context, context.GetCaller(), required).ConfigureAwait(false);
        }
        else
        {
            await next(context).ConfigureAwait(false);
        }
    }
}
