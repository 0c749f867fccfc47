using System.Collections;
using System.Collections.Concurrent;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Google.Protobuf.WellKnownTypes;

namespace Lifeline.ServiceDefaults.Validation;

/// <summary>
/// Checks what holds for every field of every request, whatever the RPC, before a handler sees it — so no
/// service can forget it and no such value reaches PostgreSQL:
/// <list type="bullet">
/// <item>no string (field, repeated item, map key or value, <c>Struct</c> key or string) contains NUL (U+0000),
/// which PostgreSQL refuses in text and jsonb;</item>
/// <item>every <c>Timestamp</c> is within 0001-01-01..9999-12-31 with nanos in 0..999,999,999;</item>
/// <item>every <c>Duration</c> is normalized (nanos within ±999,999,999 and of the sign of its seconds) and
/// within ±10,000 years;</item>
/// <item>every number in a <c>google.protobuf.Value</c> is finite.</item>
/// </list>
/// Field paths are written as the contracts name them: <c>tasks[3].payload</c>, <c>labels["k"]</c>.
/// </summary>
public static class ContractGuard
{
    private static readonly ConcurrentDictionary<MessageDescriptor, bool> NeedsWalk = new();

    /// <summary>Throws a <see cref="Errors.ValidationException"/> naming every offending field (capped).</summary>
    public static void ThrowIfInvalid(object? request)
    {
        if (request is not IMessage message)
        {
            return;
        }
        var violations = new Violations();
        Check(message, "", violations, 0);
        violations.ThrowIfAny();
    }

    /// <summary>Records the violations of <paramref name="message"/> under <paramref name="path"/>.</summary>
    public static void Check(IMessage message, string path, Violations violations, int depth)
    {
        var descriptor = message.Descriptor;
        if (depth > 64 || !NeedsWalk.GetOrAdd(descriptor, static d => Walkable(d, [])))
        {
            return;
        }
        switch (message)
        {
            case Timestamp t:
                if (!FieldChecks.IsValid(t))
                {
                    violations.Add(Name(path), "is not a valid timestamp: it must lie within 0001-01-01 and 9999-12-31 with nanos in 0..999999999");
                }
                return;
            case Duration d:
                if (!FieldChecks.IsValid(d))
                {
                    violations.Add(Name(path), "is not a valid duration: it must be normalized (nanos of the same sign as seconds, |nanos| < 1e9) and within ±10,000 years");
                }
                return;
            case Value { KindCase: Value.KindOneofCase.NumberValue } v when !double.IsFinite(v.NumberValue):
                violations.Add(Name(path), "must be a finite number (JSON has no NaN or Infinity)");
                return;
        }
        foreach (var field in descriptor.Fields.InFieldNumberOrder())
        {
            var value = field.Accessor.GetValue(message);
            var fieldPath = path.Length == 0 ? field.Name : $"{path}.{field.Name}";
            if (field.IsMap)
            {
                var keyField = field.MessageType.FindFieldByNumber(1);
                var valueField = field.MessageType.FindFieldByNumber(2);
                var i = 0;
                foreach (DictionaryEntry entry in (IDictionary)value)
                {
                    var key = entry.Key.ToString() ?? "";
                    var entryPath = EntryPath(fieldPath, key, i++);
                    if (keyField.FieldType == FieldType.String)
                    {
                        CheckString(key, entryPath, violations);
                    }
                    CheckValue(valueField, entry.Value, entryPath, violations, depth);
                }
            }
            else if (field.IsRepeated)
            {
                var i = 0;
                foreach (var item in (IEnumerable)value)
                {
                    CheckValue(field, item, $"{fieldPath}[{i++}]", violations, depth);
                }
            }
            else if (field.FieldType != FieldType.Message || field.Accessor.HasValue(message))
            {
                CheckValue(field, value, fieldPath, violations, depth);
            }
        }
    }

    private static void CheckValue(FieldDescriptor field, object? value, string path, Violations violations, int depth)
    {
        switch (field.FieldType)
        {
            case FieldType.String:
                CheckString(value as string, path, violations);
                break;
            case FieldType.Message or FieldType.Group when value is IMessage nested:
                Check(nested, path, violations, depth + 1);
                break;
        }
    }

    private static void CheckString(string? value, string path, Violations violations)
    {
        if (value is not null && value.Contains('\0', StringComparison.Ordinal))
        {
            violations.Add(path, "must not contain NUL characters (U+0000)");
        }
    }

    /// <summary>
    /// A map entry's path as the services write it: <c>tags[team]</c> for a printable key of up to 64 characters,
    /// else <c>tags (entry 2)</c> (its position) — a path never echoes a NUL or a megabyte-long key.
    /// </summary>
    public static string EntryPath(string mapPath, string key, int index) =>
        key.Length is > 0 and <= 64 && !key.Any(char.IsControl) ? $"{mapPath}[{key}]" : $"{mapPath} (entry {index})";

    private static string Name(string path) => path.Length == 0 ? "(request)" : path;

    /// <summary>Whether a message can hold anything this guard checks (strings, timestamps, durations, values).</summary>
    private static bool Walkable(MessageDescriptor descriptor, HashSet<MessageDescriptor> seen)
    {
        if (descriptor.FullName is "google.protobuf.Timestamp" or "google.protobuf.Duration" or "google.protobuf.Value")
        {
            return true;
        }
        if (!seen.Add(descriptor))
        {
            return false; // a recursive type: its other fields decide
        }
        foreach (var field in descriptor.Fields.InFieldNumberOrder())
        {
            if (field.FieldType == FieldType.String
                || (field.FieldType is FieldType.Message or FieldType.Group && Walkable(field.MessageType, seen)))
            {
                return true;
            }
        }
        return false;
    }
}
