using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Lifeline.Recovery.Notifications;

/// <summary>
/// The <c>X-Lifeline-Signature</c> header: <c>sha256=</c> + lowercase hex HMAC-SHA256, keyed with the
/// webhook's secret, of <c>"&lt;timestamp&gt;.&lt;payload&gt;"</c> (timestamp in Unix seconds, as sent in
/// <c>X-Lifeline-Timestamp</c>; payload the exact request body). Receivers recompute it and compare in
/// constant time; the timestamp lets them refuse replays older than a few minutes.
/// </summary>
public static class WebhookSignature
{
    public const string Prefix = "sha256=";

    public static string Sign(string secret, long unixSeconds, string payload)
    {
        var message = Encoding.UTF8.GetBytes(unixSeconds.ToString(CultureInfo.InvariantCulture) + "." + payload);
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), message);
        return Prefix + Convert.ToHexStringLower(mac);
    }

    /// <summary>Whether <paramref name="signature"/> is the signature of this timestamp and payload (constant-time comparison).</summary>
    public static bool Verify(string secret, long unixSeconds, string payload, string signature) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Sign(secret, unixSeconds, payload)), Encoding.ASCII.GetBytes(signature));
}
