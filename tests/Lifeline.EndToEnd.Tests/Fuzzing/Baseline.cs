using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf.Reflection;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// The plausible value every field of a request gets when it is not the one a case attacks, so the attacked value gets
/// past "required field missing" and reaches deeper code. Every free-text value carries the case's <see cref="Marker"/>,
/// which is how the store scan tells which case wrote a row.
/// </summary>
/// <remarks>
/// Names pick the shape of a string (descriptors carry no comments): <c>*_id</c> a UUID, page tokens empty,
/// <c>payload</c>/<c>result</c>/<c>context</c>… a JSON object, hashes 64 hex digits, the rest the marker (letters and
/// digits only, valid wherever a name or type is). This only decides how deep an attack gets, not which fields are
/// attacked: every field of every request is. <c>dry_run</c> is true so that a baseline never does an operator's work.
/// Ids are random, so no existing task, worker, plan or backup is ever acted on.
/// </remarks>
internal sealed class Baseline(string marker, Random random, DateTimeOffset now)
{
    /// <summary>How deep nested messages are filled (and walked for targets).</summary>
    public const int MaxDepth = 4;

    private static readonly string[] JsonTextNames = ["payload", "result", "context", "json", "data", "params"];

    public string Marker { get; } = marker;

    public Random Random { get; } = random;

    public DateTimeOffset Now { get; } = now;

    /// <summary>
    /// Values that string fields of these names get wherever they appear (<c>task_id</c> → an existing task's id),
    /// instead of a random one: how the authorization matrix aims a request at a given tenant's objects.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Fixed { get; init; }

    /// <summary>
    /// The string values of a bidirectional stream's opening message (Dispatch's <c>open</c>: a registered worker and
    /// its task type), so the service admits the stream and judges the message after it; null: as <see cref="Fixed"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Opening { get; init; }

    /// <summary>This baseline with <see cref="Opening"/> as its fixed values.</summary>
    public Baseline ForOpening() => Opening is null ? this : new Baseline(Marker, Random, Now) { Fixed = Opening };

    public string Uuid()
    {
        Span<byte> bytes = stackalloc byte[16];
        Random.NextBytes(bytes);
        bytes[7] = (byte)((bytes[7] & 0x0F) | 0x40);
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);
        return new Guid(bytes).ToString();
    }

    /// <summary>The baseline text of a string field; empty means: leave the field unset.</summary>
    public string String(FieldDescriptor field)
    {
        var name = field.Name;
        if (Fixed is not null && Fixed.TryGetValue(name, out var fixedValue))
        {
            return fixedValue;
        }

        if (name == "id" || name.EndsWith("_id", StringComparison.Ordinal) || name.EndsWith("_ids", StringComparison.Ordinal))
        {
            return Uuid();
        }

        if (name.Contains("token", StringComparison.Ordinal))
        {
            return "";
        }

        if (name.Contains("cron", StringComparison.Ordinal) || name == "schedule")
        {
            return "0 3 * * *";
        }

        if (name.Contains("sha", StringComparison.Ordinal) || name.Contains("checksum", StringComparison.Ordinal))
        {
            return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Marker)));
        }

        if (name.Contains("uri", StringComparison.Ordinal) || name.Contains("url", StringComparison.Ordinal))
        {
            return $"https://example.invalid/{Marker}";
        }

        if (JsonTextNames.Any(n => name.Contains(n, StringComparison.Ordinal)))
        {
            return $$"""{"fz":"{{Marker}}"}""";
        }

        return Marker;
    }

    public static bool Bool(FieldDescriptor field) => field.Name == "dry_run";

    /// <summary>The first non-zero value (the zero value is "unspecified", which most requests refuse).</summary>
    public static EnumValueDescriptor EnumValue(FieldDescriptor field) =>
        field.EnumType.Values.FirstOrDefault(v => v.Number != 0) ?? field.EnumType.Values[0];

    public long TimestampSeconds => Now.ToUnixTimeSeconds();

    public string TimestampJson => Now.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public const long DurationSeconds = 5;
}
