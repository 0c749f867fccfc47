using Google.Protobuf.WellKnownTypes;

namespace Lifeline.ServiceDefaults.Protobuf;

/// <summary>
/// Database times → <c>google.protobuf.Timestamp</c>. Npgsql hands timestamptz back as UTC, sometimes with an
/// unspecified kind, which <see cref="Timestamp.FromDateTime"/> refuses; every mapper converts through here.
/// </summary>
public static class ProtoTime
{
    public static Timestamp Time(DateTime utc) => Timestamp.FromDateTime(DateTime.SpecifyKind(utc, DateTimeKind.Utc));

    public static Timestamp? Time(DateTime? utc) => utc is { } value ? Time(value) : null;
}
