using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.ServiceDefaults.Paging;

/// <summary>
/// Page tokens of every listing in the suite: opaque to callers and checked on the way back in. A token is the
/// base64url of a version byte, the listing's keyset position (the last row of the previous page) and a check
/// (the first 12 bytes of SHA-256 over the listing's name, the version and the position). A token that was not
/// issued — garbage, a truncated or edited token, one of another listing — fails the check and is refused as
/// INVALID_ARGUMENT on <c>page_token</c> before it reaches a query. The check is an integrity check, not a
/// secret: a deliberately forged token only moves the position of a listing that is still filtered by tenant,
/// and its position is parsed strictly (time in range, valid UTF-8 without NUL) like any other.
/// </summary>
public static class PageTokens
{
    /// <summary>The violation's description for a token that was not issued by the listing.</summary>
    public const string NotIssued = "is not a page token issued by this listing (pass next_page_token back unchanged)";

    /// <summary>Longer tokens are never issued (the longest position is a 128-character name).</summary>
    public const int MaxTokenLength = 1024;

    private const byte Version = 1;
    private const int CheckBytes = 12;

    // ---- positions ----

    /// <summary>A (time, id) keyset position.</summary>
    public static string Encode(string listing, DateTime time, Guid id)
    {
        Span<byte> position = stackalloc byte[24];
        BinaryPrimitives.WriteInt64BigEndian(position, time.Ticks);
        id.TryWriteBytes(position[8..], bigEndian: true, out _);
        return Seal(listing, position);
    }

    public static bool TryDecode(string listing, string token, out DateTime time, out Guid id)
    {
        time = default;
        id = default;
        if (Open(listing, token) is not { Length: 24 } position)
        {
            return false;
        }
        var ticks = BinaryPrimitives.ReadInt64BigEndian(position);
        if (ticks < DateTime.MinValue.Ticks || ticks > DateTime.MaxValue.Ticks)
        {
            return false;
        }
        time = new DateTime(ticks, DateTimeKind.Utc);
        id = new Guid(position.AsSpan(8), bigEndian: true);
        return true;
    }

    /// <summary>A numeric position (a sequence, an event id).</summary>
    public static string Encode(string listing, long value)
    {
        Span<byte> position = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(position, value);
        return Seal(listing, position);
    }

    public static bool TryDecode(string listing, string token, out long value)
    {
        value = 0;
        if (Open(listing, token) is not { Length: 8 } position)
        {
            return false;
        }
        value = BinaryPrimitives.ReadInt64BigEndian(position);
        return true;
    }

    /// <summary>An id position.</summary>
    public static string Encode(string listing, Guid id)
    {
        Span<byte> position = stackalloc byte[16];
        id.TryWriteBytes(position, bigEndian: true, out _);
        return Seal(listing, position);
    }

    public static bool TryDecode(string listing, string token, out Guid id)
    {
        id = default;
        if (Open(listing, token) is not { Length: 16 } position)
        {
            return false;
        }
        id = new Guid(position, bigEndian: true);
        return true;
    }

    /// <summary>A text position (a name).</summary>
    public static string Encode(string listing, string text) => Seal(listing, Encoding.UTF8.GetBytes(text));

    public static bool TryDecode(string listing, string token, out string text)
    {
        text = "";
        if (Open(listing, token) is not { } position)
        {
            return false;
        }
        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(position);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
        return !text.Contains('\0', StringComparison.Ordinal);
    }

    /// <summary>
    /// Decodes a request's <c>page_token</c> with <paramref name="decode"/>; empty means the first page (false,
    /// nothing added); a token that does not decode adds the violation.
    /// </summary>
    public static bool TryRead(Violations v, string token, Func<string, bool> decode, string field = "page_token")
    {
        if (string.IsNullOrEmpty(token))
        {
            return false;
        }
        if (decode(token))
        {
            return true;
        }
        v.Add(field, NotIssued);
        return false;
    }

    // ---- framing ----

    private static string Seal(string listing, ReadOnlySpan<byte> position)
    {
        var bytes = new byte[1 + position.Length + CheckBytes];
        bytes[0] = Version;
        position.CopyTo(bytes.AsSpan(1));
        Check(listing, bytes.AsSpan(0, 1 + position.Length), bytes.AsSpan(1 + position.Length));
        return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    private static byte[]? Open(string listing, string token)
    {
        if (token.Length is 0 or > MaxTokenLength || token.Length % 4 == 1)
        {
            return null;
        }
        foreach (var c in token)
        {
            if (c is not ((>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_'))
            {
                return null;
            }
        }
        var base64 = token.Replace('-', '+').Replace('_', '/');
        base64 = base64.PadRight(base64.Length + ((4 - (base64.Length % 4)) % 4), '=');
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(base64);
        }
        catch (FormatException)
        {
            return null;
        }
        // Canonical encoding only: a token with other unused bits than the one issued is not that token.
        if (!string.Equals(Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_'), token, StringComparison.Ordinal))
        {
            return null;
        }
        if (bytes.Length < 1 + CheckBytes || bytes[0] != Version)
        {
            return null;
        }
        var body = bytes.AsSpan(0, bytes.Length - CheckBytes);
        Span<byte> expected = stackalloc byte[CheckBytes];
        Check(listing, body, expected);
        return CryptographicOperations.FixedTimeEquals(expected, bytes.AsSpan(bytes.Length - CheckBytes)) ? body[1..].ToArray() : null;
    }

    private static void Check(string listing, ReadOnlySpan<byte> body, Span<byte> check)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes("lifeline.page_token:" + listing + "\n"));
        hash.AppendData(body);
        Span<byte> digest = stackalloc byte[32];
        hash.GetHashAndReset(digest);
        digest[..CheckBytes].CopyTo(check);
    }
}
