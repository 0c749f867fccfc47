using System.Globalization;

namespace Lifeline.Backup.Scheduling;

/// <summary>
/// A 5-field cron expression (minute hour day-of-month month day-of-week), evaluated in UTC. Fields take
/// <c>*</c>, numbers, ranges <c>a-b</c>, steps <c>*/n</c> and <c>a-b/n</c>, lists <c>a,b</c>, month names
/// (<c>jan</c>…) and day names (<c>sun</c>…; 0 and 7 are Sunday). When both day fields are restricted, a day
/// matching either runs (as in Vixie cron).
/// </summary>
public sealed class CronExpression
{
    private static readonly string[] Months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    private static readonly string[] Days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

    private readonly bool[] _minutes, _hours, _daysOfMonth, _months, _daysOfWeek;
    private readonly bool _domRestricted, _dowRestricted;

    private CronExpression(bool[] minutes, bool[] hours, bool[] dom, bool[] months, bool[] dow, bool domRestricted, bool dowRestricted)
    {
        (_minutes, _hours, _daysOfMonth, _months, _daysOfWeek) = (minutes, hours, dom, months, dow);
        (_domRestricted, _dowRestricted) = (domRestricted, dowRestricted);
    }

    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="error"/> says what is wrong.</summary>
    public static bool TryParse(string? text, out CronExpression? expression, out string error)
    {
        expression = null;
        var fields = (text ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (fields.Length != 5)
        {
            error = $"must have 5 fields (minute hour day-of-month month day-of-week); got {fields.Length}";
            return false;
        }
        var minutes = Field(fields[0], 0, 59, null, "minute", out error);
        var hours = error.Length == 0 ? Field(fields[1], 0, 23, null, "hour", out error) : null;
        var dom = error.Length == 0 ? Field(fields[2], 1, 31, null, "day-of-month", out error) : null;
        var months = error.Length == 0 ? Field(fields[3], 1, 12, Months, "month", out error) : null;
        var dow = error.Length == 0 ? Field(fields[4], 0, 7, Days, "day-of-week", out error) : null;
        if (error.Length > 0)
        {
            return false;
        }
        dow![0] |= dow[7]; // 7 is Sunday too
        expression = new CronExpression(minutes!, hours!, dom!, months!, dow, fields[2] != "*", fields[4] != "*");
        return true;
    }

    /// <summary>The first matching minute strictly after <paramref name="after"/> (UTC), or null if none within 5 years.</summary>
    public DateTime? NextAfter(DateTime after)
    {
        var t = new DateTime(after.Year, after.Month, after.Day, after.Hour, after.Minute, 0, DateTimeKind.Utc).AddMinutes(1);
        var limit = t.AddYears(5);
        while (t < limit)
        {
            if (!_months[t.Month])
            {
                t = new DateTime(t.Year, t.Month, 1, 0, 0, 0, DateTimeKind.Utc).AddMonths(1);
                continue;
            }
            if (!DayMatches(t))
            {
                t = t.Date.AddDays(1);
                continue;
            }
            if (!_hours[t.Hour])
            {
                t = new DateTime(t.Year, t.Month, t.Day, t.Hour, 0, 0, DateTimeKind.Utc).AddHours(1);
                continue;
            }
            if (!_minutes[t.Minute])
            {
                t = t.AddMinutes(1);
                continue;
            }
            return t;
        }
        return null;
    }

    private bool DayMatches(DateTime t)
    {
        var dom = _daysOfMonth[t.Day];
        var dow = _daysOfWeek[(int)t.DayOfWeek];
        return _domRestricted && _dowRestricted ? dom || dow : dom && dow;
    }

    private static bool[]? Field(string field, int min, int max, string[]? names, string name, out string error)
    {
        error = "";
        var set = new bool[max + 1];
        foreach (var part in field.Split(','))
        {
            var step = 1;
            var range = part;
            var slash = part.IndexOf('/', StringComparison.Ordinal);
            if (slash >= 0)
            {
                if (!int.TryParse(part[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out step) || step < 1 || step > max)
                {
                    error = $"{name} field '{part}': the step must be a number from 1 to {max}";
                    return null;
                }
                range = part[..slash];
            }
            int from, to;
            if (range == "*")
            {
                (from, to) = (min, max);
            }
            else
            {
                var dash = range.IndexOf('-', StringComparison.Ordinal);
                if (!Value(dash >= 0 ? range[..dash] : range, min, max, names, out from)
                    || !Value(dash >= 0 ? range[(dash + 1)..] : range, min, max, names, out to))
                {
                    error = $"{name} field '{part}': values must be {min}-{max}{(names is null ? "" : " or names like " + names[0])}";
                    return null;
                }
                if (dash < 0 && slash >= 0)
                {
                    to = max; // "5/15" means from 5 on, every 15
                }
                if (from > to)
                {
                    error = $"{name} field '{part}': the range runs backwards";
                    return null;
                }
            }
            for (var v = from; v <= to; v += step)
            {
                set[v] = true;
            }
        }
        return set;
    }

    private static bool Value(string text, int min, int max, string[]? names, out int value)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value))
        {
            return value >= min && value <= max;
        }
        var index = names is null ? -1 : Array.IndexOf(names, text.ToLowerInvariant());
        value = names == Months ? index + 1 : index;
        return index >= 0;
    }
}
