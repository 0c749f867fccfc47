using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.Tokens;

namespace Lifeline.Gateway.Tests;

/// <summary>
/// JWTs written by hand, so a test can make any of them: the right one, and the ones an attacker would try
/// (<c>alg:none</c>, another algorithm under the same key, another key, RS256, bad lifetimes, issuers and audiences).
/// </summary>
internal static class TestJwt
{
    /// <summary>Claims of a valid token for <paramref name="tenant"/> with <paramref name="roles"/> (a string or an array).</summary>
    public static Dictionary<string, object> Claims(string tenant, object roles, string subject = "alice", TimeSpan? expiresIn = null) => new()
    {
        ["sub"] = subject,
        ["tenant"] = tenant,
        ["roles"] = roles,
        ["iat"] = Now(),
        ["exp"] = Now() + (long)(expiresIn ?? TimeSpan.FromMinutes(5)).TotalSeconds,
    };

    /// <summary>HS256 under <paramref name="key"/> (default: the gateway's JWT key in these tests).</summary>
    public static string Hs256(IDictionary<string, object> claims, string key = GatewayEnvironment.SigningKey) =>
        Signed("HS256", claims, data => HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), data));

    /// <summary>HS512 under the gateway's own key: a valid signature, in an algorithm the gateway does not accept.</summary>
    public static string Hs512(IDictionary<string, object> claims, string key = GatewayEnvironment.SigningKey) =>
        Signed("HS512", claims, data => HMACSHA512.HashData(Encoding.UTF8.GetBytes(key), data));

    /// <summary>RS256 under a fresh RSA key.</summary>
    public static string Rs256(IDictionary<string, object> claims)
    {
        using var rsa = RSA.Create(2048);
        return Signed("RS256", claims, data => rsa.SignData(data, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
    }

    /// <summary>An unsigned token: <c>{"alg":"none"}</c> and an empty signature.</summary>
    public static string None(IDictionary<string, object> claims) => Signed("none", claims, _ => []);

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private static string Signed(string algorithm, IDictionary<string, object> claims, Func<byte[], byte[]> sign)
    {
        var header = Base64UrlEncoder.Encode(JsonSerializer.Serialize(new Dictionary<string, string> { ["alg"] = algorithm, ["typ"] = "JWT" }));
        var payload = Base64UrlEncoder.Encode(JsonSerializer.Serialize(claims));
        var signed = header + "." + payload;
        return signed + "." + Base64UrlEncoder.Encode(sign(Encoding.ASCII.GetBytes(signed)));
    }
}
