using Lifeline.ServiceDefaults.Security;
using Microsoft.AspNetCore.Authorization;

namespace Lifeline.Gateway.Security;

/// <summary>
/// The caller's role must be at least <see cref="Least"/>. <see cref="Role.Service"/> is met by nobody: no
/// credential holds it, so an RPC only the services may call is closed at the gateway.
/// </summary>
internal sealed class RoleRequirement(Role least) : IAuthorizationRequirement
{
    public Role Least { get; } = least;

    /// <summary>The policy of each role: <c>role:reader</c> … <c>role:platform-admin</c>, and <c>role:service</c> that denies all.</summary>
    public static string PolicyName(Role role) => "role:" + role.Name();

    /// <summary>Adds one policy per role: an authenticated caller whose role is at least the policy's.</summary>
    public static void AddPolicies(AuthorizationOptions options)
    {
        foreach (var role in Enum.GetValues<Role>())
        {
            options.AddPolicy(PolicyName(role), policy => policy.RequireAuthenticatedUser().AddRequirements(new RoleRequirement(role)));
        }
    }
}

/// <summary>Meets a <see cref="RoleRequirement"/> when the authenticated caller's role is high enough.</summary>
internal sealed class RoleRequirementHandler : AuthorizationHandler<RoleRequirement>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, RoleRequirement requirement)
    {
        if (requirement.Least != Role.Service && GatewayCaller.From(context.User) is { } caller && caller.Role >= requirement.Least)
        {
            context.Succeed(requirement);
        }

        return Task.CompletedTask;
    }
}
