using System.Globalization;
using Google.Protobuf.WellKnownTypes;

namespace Lifeline.ServiceDefaults.Validation;

/// <summary>
/// Checks of common field kinds that every service needs the same way: durations and timestamps checked on their
/// exact protobuf values (a −1 ns duration is negative, not "0 ticks"), and bounded text. Whether a Timestamp or
/// Duration is valid at all, and that no string holds NUL, <see cref="ContractGuard"/> has checked for every
/// request before a handler runs; <see cref="IsValid(Google.Protobuf.WellKnownTypes.Timestamp)"/> and
/// <see cref="IsValid(Google.Protobuf.WellKnownTypes.Duration)"/> are the one definition both use.
/// </summary>
public static class FieldChecks
{
    private const long MaxDurationSeconds = 315_576_000_000; // 10,000 years, google.protobuf.Duration's documented range
    private const long MinTimestampSeconds = -62_135_596_800; // 0001-01-01T00:00:00Z
    private const long MaxTimestampSeconds = 253_402_300_799; // 9999-12-31T23:59:59Z

    /// <summary>Within 0001-01-01 … 9999-12-31 with nanos 0 … 999,999,999.</summary>
    public static bool IsValid(Timestamp value) =>
        value.Seconds is >= MinTimestampSeconds and <= MaxTimestampSeconds && value.Nanos is >= 0 and < 1_000_000_000;

    /// <summary>Normalized (|nanos| &lt; 1e9, of the sign of its seconds) and within ±10,000 years.</summary>
    public static bool IsValid(Duration value) =>
        value.Seconds is >= -MaxDurationSeconds and <= MaxDurationSeconds && value.Nanos is > -1_000_000_000 and < 1_000_000_000
        && !(value.Seconds > 0 && value.Nanos < 0) && !(value.Seconds < 0 && value.Nanos > 0);

    /// <summary>
    /// A duration within <paramref name="min"/> … <paramref name="max"/> (inclusive), compared exactly in
    /// nanoseconds; unset gives <paramref name="fallback"/> (or <paramref name="min"/>). A violation names the range.
    /// </summary>
    public static TimeSpan Duration(this Violations v, string field, Duration? value, TimeSpan min, TimeSpan max, TimeSpan? fallback = null)
    {
        if (value is null)
        {
            return fallback ?? min;
        }
        if (!IsValid(value))
        {
            v.Add(field, "is not a valid duration (seconds and nanos must have the same sign, |nanos| < 1e9)");
            return fallback ?? min;
        }
        var nanos = (Int128)value.Seconds * 1_000_000_000 + value.Nanos;
        if (nanos < (Int128)min.Ticks * 100 || nanos > (Int128)max.Ticks * 100)
        {
            v.Add(field, $"must be between {Describe(min)} and {Describe(max)}; got {Describe(value)}");
            return fallback ?? min;
        }
        return TimeSpan.FromTicks((long)(nanos / 100));
    }

    /// <summary>A timestamp within 0001-01-01 … 9999-12-31 with nanos 0 … 999,999,999; null when unset or invalid.</summary>
    public static DateTime? Timestamp(this Violations v, string field, Timestamp? value)
    {
        if (value is null)
        {
            return null;
        }
        if (!IsValid(value))
        {
            v.Add(field, "is not a valid timestamp (0001-01-01 to 9999-12-31, nanos 0 to 999,999,999)");
            return null;
        }
        return value.ToDateTime();
    }

    /// <summary>
    /// Text of at most <paramref name="maxLength"/> characters; <paramref name="required"/> refuses the empty string.
    /// The value is never echoed. (NUL, which PostgreSQL cannot store, <see cref="ContractGuard"/> refused already.)
    /// </summary>
    public static string Text(this Violations v, string field, string value, int maxLength, bool required = false)
    {
        if (value.Length == 0)
        {
            v.AddIf(required, field, "is required");
        }
        else if (value.Length > maxLength)
        {
            v.Add(field, string.Create(CultureInfo.InvariantCulture, $"must be at most {maxLength} characters; got {value.Length}"));
        }
        return value;
    }

    /// <summary>A finite number within <paramref name="min"/> … <paramref name="max"/> (NaN and infinities refused).</summary>
    public static double Finite(this Violations v, string field, double value, double min, double max)
    {
        if (!double.IsFinite(value) || value < min || value > max)
        {
            v.Add(field, string.Create(CultureInfo.InvariantCulture, $"must be a finite number between {min} and {max}; got {value}"));
            return double.IsFinite(value) ? Math.Clamp(value, min, max) : min;
        }
        return value;
    }

    private static string Describe(TimeSpan span) => span.TotalSeconds % 1 == 0
        ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalSeconds:0}s")
        : string.Create(CultureInfo.InvariantCulture, $"{span.TotalSeconds:0.#######}s");

    private static string Describe(Duration value)
    {
        var nanos = (decimal)value.Seconds * 1_000_000_000m + value.Nanos;
        return string.Create(CultureInfo.InvariantCulture, $"{nanos / 1_000_000_000m:0.#########}s");
    }
}
