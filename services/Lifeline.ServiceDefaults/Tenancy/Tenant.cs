using System.Text.RegularExpressions;
using Grpc.Core;
using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.ServiceDefaults.Tenancy;

/// <summary>
/// The tenant a call acts for. It travels in the <c>x-lifeline-tenant</c> metadata header, which the
/// gateway sets from the caller's credential; it is never read from a request body.
/// </summary>
public static partial class Tenant
{
    public const string HeaderName = "x-lifeline-tenant";
    public const string Default = "default";

    public static string From(ServerCallContext context)
    {
        var value = context.RequestHeaders.GetValue(HeaderName);
        if (string.IsNullOrEmpty(value))
        {
            return Default;
        }
        if (!ValidTenant().IsMatch(value))
        {
            throw ValidationException.For(HeaderName, "must be 1 to 64 characters of lowercase letters, digits, '-' and '_'");
        }
        return value;
    }

    [GeneratedRegex("^[a-z0-9_-]{1,64}$")]
    private static partial Regex ValidTenant();
}
