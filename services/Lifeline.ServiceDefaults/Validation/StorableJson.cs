using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Lifeline.ServiceDefaults.Validation;

/// <summary>
/// JSON that PostgreSQL's <c>jsonb</c> stores as it is. Valid JSON is not enough: jsonb keeps numbers as
/// <c>numeric</c> (at most 131,072 digits before the decimal point and 16,383 after, and an exponent below
/// 2^30 — <c>{"a":1e999999}</c> "overflows numeric format") and refuses the NUL character and unpaired UTF-16
/// surrogate escapes in strings. Every service checks JSON it will store (or hand on to a service that stores it)
/// here, so such input is INVALID_ARGUMENT on the field rather than a failed INSERT.
/// </summary>
public static class StorableJson
{
    /// <summary>Most digits of a <c>numeric</c> before the decimal point (weight 32,767 of base-10,000 digits).</summary>
    public const int MaxIntegerDigits = 131_072;

    /// <summary>Most digits of a <c>numeric</c> after the decimal point (its display scale).</summary>
    public const int MaxFractionDigits = 16_383;

    // numeric_in refuses an exponent of INT_MAX/2 or more in either direction before looking at the digits.
    private const long MaxExponent = int.MaxValue / 2 - 1;

    /// <summary>
    /// Checks <paramref name="text"/> (not empty); adds one violation on <paramref name="field"/> for the first
    /// problem and returns null, or returns the kind of the root value.
    /// </summary>
    public static JsonValueKind? Check(Violations v, string field, string text, int maxDepth = 64)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = maxDepth });
        JsonValueKind? root = null;
        try
        {
            while (reader.Read())
            {
                root ??= KindOf(reader.TokenType);
                switch (reader.TokenType)
                {
                    case JsonTokenType.Number when !FitsNumeric(reader.ValueSpan):
                        v.Add(field, string.Create(CultureInfo.InvariantCulture,
                            $"holds the number {Quote(reader.ValueSpan)} (at byte {reader.TokenStartIndex}), which PostgreSQL cannot store: " +
                            $"at most {MaxIntegerDigits} digits before the decimal point and {MaxFractionDigits} after"));
                        return null;
                    case JsonTokenType.String or JsonTokenType.PropertyName when reader.ValueIsEscaped:
                        if (StringProblem(ref reader) is { } problem)
                        {
                            v.Add(field, string.Create(CultureInfo.InvariantCulture, $"{problem} (at byte {reader.TokenStartIndex})"));
                            return null;
                        }
                        break;
                }
            }
        }
        catch (JsonException e)
        {
            v.Add(field, "is not valid JSON: " + e.Message);
            return null;
        }
        if (root is null)
        {
            v.Add(field, "is not valid JSON: it holds no value");
        }
        return root;
    }

    /// <summary>Whether a JSON number literal (valid JSON grammar) fits PostgreSQL's <c>numeric</c>.</summary>
    public static bool FitsNumeric(ReadOnlySpan<byte> literal)
    {
        var i = 0;
        if (i < literal.Length && literal[i] == '-')
        {
            i++;
        }
        var integerStart = i;
        while (i < literal.Length && IsDigit(literal[i]))
        {
            i++;
        }
        var integer = literal[integerStart..i];
        var fraction = ReadOnlySpan<byte>.Empty;
        if (i < literal.Length && literal[i] == '.')
        {
            var fractionStart = ++i;
            while (i < literal.Length && IsDigit(literal[i]))
            {
                i++;
            }
            fraction = literal[fractionStart..i];
        }
        long exponent = 0;
        if (i < literal.Length && literal[i] is (byte)'e' or (byte)'E')
        {
            i++;
            var negative = false;
            if (i < literal.Length && literal[i] is (byte)'+' or (byte)'-')
            {
                negative = literal[i] == '-';
                i++;
            }
            for (; i < literal.Length; i++)
            {
                exponent = exponent * 10 + (literal[i] - '0');
                if (exponent > MaxExponent)
                {
                    return false;
                }
            }
            exponent = negative ? -exponent : exponent;
        }

        // The display scale: digits after the point once the exponent is applied (kept even for zero).
        if (fraction.Length - exponent > MaxFractionDigits)
        {
            return false;
        }
        // The magnitude: how many digits the value has before the point (only a non-zero value has any).
        var leadingZeros = integer.IndexOfAnyExcept((byte)'0');
        long digitsBeforePoint;
        if (leadingZeros >= 0)
        {
            digitsBeforePoint = integer.Length - leadingZeros + exponent;
        }
        else
        {
            var firstSignificant = fraction.IndexOfAnyExcept((byte)'0');
            if (firstSignificant < 0)
            {
                return true; // zero
            }
            digitsBeforePoint = exponent - firstSignificant;
        }
        return digitsBeforePoint <= MaxIntegerDigits;
    }

    private static string? StringProblem(ref Utf8JsonReader reader)
    {
        string value;
        try
        {
            value = reader.GetString()!;
        }
        catch (InvalidOperationException)
        {
            return "holds an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff), which PostgreSQL cannot store";
        }
        return value.Contains('\0', StringComparison.Ordinal)
            ? "must not contain the NUL character (\\u0000): PostgreSQL cannot store it"
            : null;
    }

    private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';

    private static string Quote(ReadOnlySpan<byte> literal) =>
        "'" + Violations.Truncate(Encoding.UTF8.GetString(literal[..Math.Min(literal.Length, 80)]), 32) + "'";

    private static JsonValueKind KindOf(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => JsonValueKind.Object,
        JsonTokenType.StartArray => JsonValueKind.Array,
        JsonTokenType.String => JsonValueKind.String,
        JsonTokenType.Number => JsonValueKind.Number,
        JsonTokenType.True => JsonValueKind.True,
        JsonTokenType.False => JsonValueKind.False,
        _ => JsonValueKind.Null,
    };
}
