using System.Globalization;
using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.ServiceDefaults.Validation;

/// <summary>
/// Size before work for repeated fields (lists and maps of a request): the count is checked first and an
/// oversized request is refused at once with one violation, before any item is looked at; the items of an
/// admissible request are then checked in order until a few of them were found wrong, and the rest is left
/// unchecked. A request of 100,000 bad items costs what one of a few bad items costs, and its refusal stays
/// small enough for any proxy's header limits.
/// </summary>
public static class RepeatedFields
{
    /// <summary>After this many violations from items, the remaining items are not checked.</summary>
    public const int MaxItemViolations = 10;

    /// <summary>
    /// Refuses the request (INVALID_ARGUMENT, one violation on <paramref name="field"/> naming the limit and the
    /// count given) when <paramref name="count"/> is above <paramref name="max"/> or below <paramref name="min"/>.
    /// </summary>
    public static void ThrowIfCountOutside(string field, int count, int max, int min = 0, string items = "items")
    {
        if (count > max || count < min)
        {
            throw ValidationException.For(field, Describe(count, max, min, items));
        }
    }

    /// <summary>As <see cref="ThrowIfCountOutside"/>, but adds the violation instead of throwing; true when the count is admissible.</summary>
    public static bool CountWithin(Violations v, string field, int count, int max, int min = 0, string items = "items")
    {
        if (count > max || count < min)
        {
            v.Add(field, Describe(count, max, min, items));
            return false;
        }
        return true;
    }

    /// <summary>
    /// Checks items 0 … <paramref name="count"/>-1 with <paramref name="check"/> (each into its own collector),
    /// copying their violations into <paramref name="v"/>; once <see cref="MaxItemViolations"/> were copied the
    /// remaining items are skipped and one violation on <paramref name="field"/> says how many. Returns whether
    /// every item was checked (and so whether per-item results are complete).
    /// </summary>
    public static bool CheckItems(Violations v, string field, int count, Action<Violations, int> check)
    {
        var listed = 0;
        for (var i = 0; i < count; i++)
        {
            var item = new Violations();
            check(item, i);
            if (!item.Any)
            {
                continue;
            }
            listed += CopyInto(v, item);
            if (listed >= MaxItemViolations && i < count - 1)
            {
                var skipped = count - i - 1;
                v.Add(field, string.Create(CultureInfo.InvariantCulture,
                    $"{skipped} further item(s) were not checked: a refusal lists the first {MaxItemViolations} problems only"));
                return false;
            }
        }
        return true;
    }

    private static string Describe(int count, int max, int min, string items) => min > 0
        ? string.Create(CultureInfo.InvariantCulture, $"must hold {min} to {max} {items}; got {count}")
        : string.Create(CultureInfo.InvariantCulture, $"must hold at most {max} {items}; got {count}");

    private static int CopyInto(Violations target, Violations item)
    {
        foreach (var violation in item.Listed)
        {
            target.Add(violation.Field, violation.Description);
        }
        return item.Listed.Count;
    }
}
