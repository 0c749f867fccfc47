using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.ServiceDefaults.Validation;

/// <summary>
/// Collects field violations of one request and throws them together, so a caller learns its problems in
/// one round trip. Keeps the first <see cref="ValidationException.MaxListed"/> and counts the rest: a request
/// with 100,000 bad items costs a counter, not a list of 100,000 messages.
/// </summary>
public sealed class Violations
{
    private readonly List<FieldViolation> _items = [];
    private int _total;

    public bool Any => _total > 0;

    /// <summary>How many violations were found so far.</summary>
    public int Count => _total;

    /// <summary>The violations kept so far (the first <see cref="ValidationException.MaxListed"/>).</summary>
    public IReadOnlyList<FieldViolation> Listed => _items;

    public Violations Add(string field, string description)
    {
        if (_items.Count < ValidationException.MaxListed)
        {
            _items.Add(new FieldViolation(field, description));
        }
        _total++;
        return this;
    }

    /// <summary>Adds a violation when <paramref name="condition"/> is true.</summary>
    public Violations AddIf(bool condition, string field, string description) => condition ? Add(field, description) : this;

    /// <summary>Parses a UUID field, recording a violation when it is missing or malformed.</summary>
    public Guid Uuid(string field, string? value, bool required = true)
    {
        if (string.IsNullOrEmpty(value))
        {
            if (required)
            {
                Add(field, "is required (a UUID)");
            }
            return Guid.Empty;
        }
        if (!Guid.TryParse(value, out var id))
        {
            Add(field, $"'{Truncate(value, 64)}' is not a valid UUID");
            return Guid.Empty;
        }
        return id;
    }

    /// <summary>Checks that a protobuf enum value is one the contract defines.</summary>
    public void DefinedEnum<TEnum>(string field, TEnum value) where TEnum : struct, Enum
    {
        if (!Enum.IsDefined(value))
        {
            Add(field, $"{Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)} is not a known {typeof(TEnum).Name} value");
        }
    }

    /// <summary>Parses a resume position of an event stream (an <c>event_id</c>); empty means none.</summary>
    public Postgres.LogPosition? Position(string field, string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }
        if (Postgres.LogPosition.TryParse(value, out var position))
        {
            return position;
        }
        Add(field, "is not an event_id returned by this service");
        return null;
    }

    /// <summary>Validates a page size: 0 means <paramref name="defaultSize"/>.</summary>
    public int PageSize(string field, int value, int defaultSize, int maxSize)
    {
        if (value == 0)
        {
            return defaultSize;
        }
        if (value < 0 || value > maxSize)
        {
            Add(field, $"must be between 1 and {maxSize} (0 means {defaultSize}); got {value}");
            return defaultSize;
        }
        return value;
    }

    public void ThrowIfAny()
    {
        if (_total > 0)
        {
            throw new ValidationException(_items.ToArray(), _total);
        }
    }

    public static string Truncate(string value, int max) => value.Length <= max ? value : value[..max] + "…";
}
